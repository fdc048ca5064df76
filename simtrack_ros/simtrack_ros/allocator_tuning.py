"""Keep glibc from returning image-sized buffers to the kernel after every frame.

Every received image passes through several buffers of its full size (the middleware's
payload, the deserialized message, the Python message). glibc's malloc serves such large
blocks with ``mmap`` and gives them back on ``free`` (or trims the heap above 128 KiB), so
each frame pays for fresh pages: a page fault and a zeroed page per 4 KiB. For a 1920x1080
bgr8 frame that made up most of the transport time (measured on this project's 2-core Zen 4
box: a bare rclpy image round trip in one process took 12.9 ms, 3.0 ms with this tuning; see
``benchmarks/README.md``). Raising the mmap threshold to glibc's maximum (32 MiB, a 4K bgr8
frame fits) and the trim threshold keeps those pages mapped and reused. The cost is memory
that stays with the process after a burst of large frames: at most the trim threshold per
malloc arena.

This changes the whole process, so only the node's and the demo's entry points call it, not
the node class (a host process composing the node keeps its own settings). Set
``SIMTRACK_TUNE_MALLOC=0`` to leave the allocator alone.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import os
import platform

#: ``mallopt`` parameter numbers from glibc's ``malloc.h``.
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
#: glibc's upper limit for ``M_MMAP_THRESHOLD`` on 64-bit systems.
MMAP_THRESHOLD_BYTES = 32 * 1024 * 1024
TRIM_THRESHOLD_BYTES = 128 * 1024 * 1024
ENV_SWITCH = 'SIMTRACK_TUNE_MALLOC'


def tune_allocator_for_images() -> str:
    """Apply the thresholds above where glibc is the C library; return what was done, in words."""
    if os.environ.get(ENV_SWITCH, '1').strip().lower() in ('0', 'false', 'no', 'off'):
        return f'malloc left at its defaults ({ENV_SWITCH}=0)'
    if platform.system() != 'Linux' or platform.libc_ver()[0] != 'glibc':
        return 'malloc left at its defaults (not glibc)'
    try:
        libc = ctypes.CDLL(ctypes.util.find_library('c') or 'libc.so.6')
        ok = (libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES) == 1
              and libc.mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES) == 1)
    except (OSError, AttributeError) as error:
        return f'malloc left at its defaults (mallopt unavailable: {error})'
    if not ok:
        return 'malloc left at its defaults (mallopt refused the thresholds)'
    return (f'malloc tuned for large images: mmap threshold {MMAP_THRESHOLD_BYTES >> 20} MiB, '
            f'trim threshold {TRIM_THRESHOLD_BYTES >> 20} MiB ({ENV_SWITCH}=0 turns this off)')
