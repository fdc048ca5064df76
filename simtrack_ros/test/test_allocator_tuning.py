"""The malloc tuning of the node's process: large blocks stay on the heap and are reused.

Each case runs in a child interpreter, because the tuning changes the whole process.
"""
from __future__ import annotations

import json
import os
import platform
import subprocess
import sys

import pytest

pytestmark = pytest.mark.skipif(platform.libc_ver()[0] != 'glibc',
                                reason='the tuning uses glibc mallopt')

# Allocates and frees one 8 MiB block (a 1080p bgr8 frame is 6 MiB) and reports glibc's counts.
PROBE = r"""
import ctypes, json
from simtrack_ros.allocator_tuning import tune_allocator_for_images

class MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in (
        'arena', 'ordblks', 'smblks', 'hblks', 'hblkhd', 'usmblks', 'fsmblks', 'uordblks',
        'fordblks', 'keepcost')]

libc = ctypes.CDLL('libc.so.6')
libc.malloc.restype = ctypes.c_void_p
libc.free.argtypes = [ctypes.c_void_p]
libc.mallinfo2.restype = MallInfo2
message = tune_allocator_for_images()
before = libc.mallinfo2().hblks
block = libc.malloc(8 << 20)
mapped = libc.mallinfo2().hblks - before
libc.free(block)
print(json.dumps({'message': message, 'mmapped_blocks': mapped,
                  'free_kept_bytes': libc.mallinfo2().fordblks}))
"""


def _probe(**env: str) -> dict:
    result = subprocess.run([sys.executable, '-c', PROBE], env={**os.environ, **env},
                            capture_output=True, text=True, timeout=60, check=True)
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_tuned_process_keeps_frame_sized_blocks_on_the_heap():
    report = _probe(SIMTRACK_TUNE_MALLOC='1')
    assert report['message'].startswith('malloc tuned for large images')
    assert report['mmapped_blocks'] == 0
    assert report['free_kept_bytes'] >= 8 << 20


def test_switch_off_leaves_glibc_defaults():
    report = _probe(SIMTRACK_TUNE_MALLOC='0')
    assert 'defaults' in report['message'] and 'SIMTRACK_TUNE_MALLOC=0' in report['message']
    assert report['mmapped_blocks'] == 1
