"""What the host CPU offers for reduced precision, read from ``/proc/cpuinfo`` (Linux x86).

bf16 autocast on a CPU without native bf16 (no AVX512-BF16, no AMX) is emulated and runs about
3x slower than fp32 (measured for SimTrack-B/16 on an Intel Xeon with AVX-512 VNNI only: 940 ms
against 285 ms per frame), so the engine warns about it.
"""
from __future__ import annotations

import functools
import platform
from typing import FrozenSet, Optional

#: cpuinfo flags of native bf16 matrix/vector instructions.
BF16_FLAGS = frozenset({'avx512_bf16', 'amx_bf16'})
#: cpuinfo flags of fast int8 dot products.
INT8_FLAGS = frozenset({'avx512_vnni', 'avx_vnni', 'amx_int8'})
#: Flags worth printing next to a speed figure.
REPORTED_FLAGS = ('avx2', 'avx512f', 'avx512_vnni', 'avx_vnni', 'avx512_bf16', 'amx_bf16',
                  'amx_int8', 'amx_tile')


@functools.lru_cache(maxsize=1)
def _cpuinfo() -> str:
    try:
        with open('/proc/cpuinfo', encoding='utf-8', errors='replace') as handle:
            return handle.read()
    except OSError:
        return ''


def cpu_flags() -> FrozenSet[str]:
    """Return the flags of the first processor in /proc/cpuinfo (empty where none)."""
    for line in _cpuinfo().splitlines():
        key, _, value = line.partition(':')
        if key.strip() in ('flags', 'Features'):
            return frozenset(value.split())
    return frozenset()


def cpu_model() -> str:
    """Return the processor's model name (``platform.processor()`` as a fallback)."""
    for line in _cpuinfo().splitlines():
        key, _, value = line.partition(':')
        if key.strip() == 'model name':
            return value.strip()
    return platform.processor() or platform.machine() or 'unknown CPU'


def native_bf16() -> Optional[bool]:
    """True/False on x86 Linux (AVX512-BF16 or AMX present); None where it is unknown."""
    flags = cpu_flags()
    if not flags or platform.machine().lower() not in ('x86_64', 'amd64', 'i686', 'x86'):
        return None
    return bool(flags & BF16_FLAGS)


def describe_cpu() -> str:
    """One line: model name and the precision-relevant flags present."""
    flags = cpu_flags()
    present = [flag for flag in REPORTED_FLAGS if flag in flags]
    return f'{cpu_model()} [{" ".join(present) or "no avx2/avx512/amx flags"}]'
