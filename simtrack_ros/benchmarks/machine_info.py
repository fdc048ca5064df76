"""The machine a benchmark runs on, for the top of every benchmark's output.

CPU figures depend on the instruction set: bf16 autocast is fast only on processors with
native bf16 (AVX512-BF16 or AMX) and about 3x slower than fp32 without it; int8 needs VNNI or
AMX-INT8 to pay. So every benchmark prints the CPU model, these flags and torch's thread count.

Importing this module also puts the package root first on ``sys.path``, so that the
benchmarks run from a source checkout as well as from an installed package.
"""
from __future__ import annotations

from pathlib import Path
import platform
import sys
from typing import Dict

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from simtrack_ros.tracking.cpu_features import cpu_flags, cpu_model, native_bf16  # noqa: E402

#: Flags that decide the CPU figures (vector width, int8 dot products, native bf16).
FLAGS = ('avx2', 'avx512_vnni', 'avx512_bf16', 'amx_bf16', 'amx_int8')


def machine_info() -> Dict[str, str]:
    """CPU model and flags, torch threads and versions (and the GPU, if any)."""
    flags = cpu_flags()
    bf16 = native_bf16()
    info = {
        'cpu': cpu_model(),
        'cpu_flags': ' '.join(f'{flag}={"yes" if flag in flags else "no"}' for flag in FLAGS)
        if flags else 'unknown (no /proc/cpuinfo flags)',
        'native_bf16': 'unknown' if bf16 is None else 'yes' if bf16 else
        'no (bf16 autocast is emulated: about 3x slower than fp32)',
        'torch_threads': str(torch.get_num_threads()),
        'torch': torch.__version__,
        'python': platform.python_version(),
    }
    if torch.cuda.is_available():
        info['gpu'] = torch.cuda.get_device_name()
    return info


def machine_header() -> str:
    """``# key: value`` lines describing this machine; call after setting torch's threads."""
    return '\n'.join(f'# {key}: {value}' for key, value in machine_info().items())
