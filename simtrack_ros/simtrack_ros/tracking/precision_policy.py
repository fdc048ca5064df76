"""Which precision a runtime runs at, chosen from the hardware (``precision='auto'``).

``auto`` picks bf16 only where the hardware has native bf16 (x86 CPU: AVX512-BF16 or AMX; a
CUDA GPU that supports it) AND the model is wide enough for bf16 to pay (width >= 384:
SimTrack-B/16 and L/14). Measured on a CPU with native bf16 (runtime_benchmark.py): a B/16
frame runs 1.6x faster in bf16 with torch and 2.4x with OpenVINO, but the 192-wide 'small'
model is slower (12.4 ms fp32 against 17.7 ms bf16: the casts cost more than they save).
Everywhere else ``auto`` is fp32; it never picks int8, which changes the numerics (opt in, and
check it with the accuracy guard).

Explicit requests are checked: bf16 on a CPU without native bf16 is emulated and about 3x
slower (940 against 285 ms per B/16 frame), so an exported runtime refuses it (the torch
runtime keeps warning, :mod:`.engine`); ONNX Runtime has no bf16 mode; int8 needs an exported
runtime (ONNX Runtime: dynamic, OpenVINO: static) and warns on a CPU without fast int8 dot
products (VNNI or AMX); fp16 needs CUDA.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import FrozenSet, Optional
import warnings

import torch

from simtrack_ros.tracking.cpu_features import (
    BF16_FLAGS, cpu_flags, describe_cpu, INT8_FLAGS)

#: Values of ``EngineOptions.precision``.
PRECISION_NAMES = ('auto', 'fp32', 'fp16', 'bf16', 'int8')
#: Values of ``EngineOptions.runtime``.
RUNTIME_NAMES = ('auto', 'torch', 'onnxruntime', 'openvino')
#: Runtimes that run an exported (ONNX) model.
EXPORTED_RUNTIMES = ('onnxruntime', 'openvino')
#: Narrowest model (transformer width) for which ``auto`` picks bf16.
BF16_MIN_WIDTH = 384
#: Exported file precision each exported runtime runs for ``int8``.
INT8_FILE = {'onnxruntime': 'int8-dynamic', 'openvino': 'int8-static'}


@dataclass(frozen=True)
class PrecisionChoice:
    """The precision an engine runs at and why (one sentence, logged at start-up)."""

    precision: str
    reason: str


def _native_bf16(flags: FrozenSet[str]) -> bool:
    return bool(flags & BF16_FLAGS)


def _auto(runtime: str, device: torch.device, width: int, flags: FrozenSet[str]
          ) -> PrecisionChoice:
    if runtime == 'onnxruntime':
        return PrecisionChoice('fp32', 'auto: ONNX Runtime has no bf16 mode, so fp32')
    if device.type == 'cuda':
        native = torch.cuda.is_bf16_supported()
        hardware = f'GPU {torch.cuda.get_device_name(device)}'
    else:
        native = _native_bf16(flags)
        hardware = f'CPU {describe_cpu()}'
    if not native:
        return PrecisionChoice('fp32', f'auto: fp32, the {hardware} has no native bf16')
    if width < BF16_MIN_WIDTH:
        return PrecisionChoice('fp32', f'auto: fp32, the model is {width} wide; bf16 pays only '
                                       f'from {BF16_MIN_WIDTH} (B/16: 1.6-2.4x faster; '
                                       'small: slower)')
    return PrecisionChoice('bf16', f'auto: bf16, the {hardware} has native bf16 and the model '
                                   f'is {width} wide (B/16: 1.6-2.4x faster than fp32)')


def _bf16(runtime: str, device: torch.device, flags: FrozenSet[str]) -> PrecisionChoice:
    if runtime == 'onnxruntime':
        raise ValueError("precision 'bf16': ONNX Runtime has no bf16 mode; use runtime "
                         "'openvino' (or 'torch') for bf16, or precision 'fp32'")
    if device.type == 'cuda' or _native_bf16(flags):
        return PrecisionChoice('bf16', 'requested bf16, native on this hardware')
    slowdown = ('is emulated and about 3x slower than fp32 (940 against 285 ms per '
                'SimTrack-B/16 frame)')
    if runtime == 'torch':
        return PrecisionChoice('bf16', f'requested bf16; on this CPU without native bf16 it '
                                       f'{slowdown}')
    raise ValueError(f"precision 'bf16' refused: this CPU has no native bf16 (no AVX512-BF16 "
                     f'or AMX: {describe_cpu()}), where bf16 {slowdown}; use precision '
                     "'fp32' or 'auto'")


def _int8(runtime: str, device: torch.device, flags: FrozenSet[str]) -> PrecisionChoice:
    if runtime == 'torch':
        raise ValueError("precision 'int8' needs an exported runtime: runtime 'onnxruntime' "
                         "(dynamic int8) or 'openvino' (static int8); the torch runtime runs "
                         'fp32, fp16 or bf16')
    kind = INT8_FILE[runtime]
    if device.type == 'cpu' and not flags & INT8_FLAGS:
        warnings.warn(f'int8 on a CPU without fast int8 dot products (no AVX512-VNNI, AVX-VNNI '
                      f'or AMX-INT8: {describe_cpu()}) may be no faster than fp32',
                      RuntimeWarning, stacklevel=3)
    return PrecisionChoice('int8', f'requested int8 ({kind} on {runtime})')


def choose_precision(requested: str, runtime: str, device: torch.device, width: int,
                     flags: Optional[FrozenSet[str]] = None) -> PrecisionChoice:
    """Resolve ``requested`` (one of :data:`PRECISION_NAMES`) for a concrete runtime.

    ``runtime`` is 'torch', 'onnxruntime' or 'openvino'; ``device`` where it computes;
    ``width`` the model's transformer width; ``flags`` the CPU flags (None: read from
    /proc/cpuinfo). Raises ValueError for a request the hardware or runtime cannot serve
    well (see the module docstring).
    """
    if requested not in PRECISION_NAMES:
        raise ValueError(f'precision must be one of {", ".join(PRECISION_NAMES)}, '
                         f'got {requested!r}')
    if runtime not in RUNTIME_NAMES[1:]:
        raise ValueError(f"runtime must be 'torch', 'onnxruntime' or 'openvino' here, got "
                         f'{runtime!r}')
    flags = cpu_flags() if flags is None else frozenset(flags)
    if requested == 'auto':
        return _auto(runtime, device, width, flags)
    if requested == 'bf16':
        return _bf16(runtime, device, flags)
    if requested == 'int8':
        return _int8(runtime, device, flags)
    if requested == 'fp16' and device.type != 'cuda':
        raise ValueError("precision 'fp16' needs CUDA; use 'fp32', 'bf16' or 'auto' on the "
                         'CPU')
    return PrecisionChoice(requested, f'requested {requested}')
