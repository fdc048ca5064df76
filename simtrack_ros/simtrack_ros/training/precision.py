"""Device and numeric precision of a run: fp32, bf16 autocast, or fp16 autocast with a scaler.

``auto`` picks bf16 on a GPU that has it (fp16 with ``torch.amp.GradScaler`` on older GPUs) and
exact fp32 on the CPU. bf16 on the CPU only when asked: without native bf16 (AVX512-BF16, AMX)
autocast emulates it at about a third of fp32's speed (``tracking/cpu_features.py``).
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import ContextManager, List, Tuple

import torch

from simtrack_ros.tracking.cpu_features import native_bf16

_DTYPES = {'bf16': torch.bfloat16, 'fp16': torch.float16}


def resolve_device(requested: str, local_rank: int = 0) -> torch.device:
    """``auto``: this process's GPU (``cuda:<local_rank>``) if there is one, else the CPU."""
    if requested == 'auto':
        requested = f'cuda:{local_rank}' if torch.cuda.is_available() else 'cpu'
    device = torch.device(requested)
    if device.type == 'cuda':
        if not torch.cuda.is_available():
            raise ValueError(f'--device {requested}: no CUDA device is available')
        if device.index is None:
            device = torch.device('cuda', local_rank)
    return device


@dataclass(frozen=True)
class Precision:
    """How forward passes run (``autocast``) and whether losses are scaled (fp16)."""

    name: str           # fp32, bf16 or fp16
    device_type: str    # cuda or cpu

    def autocast(self) -> ContextManager:
        """Autocast context for forward passes (a no-op context for fp32)."""
        if self.name == 'fp32':
            return contextlib.nullcontext()
        return torch.autocast(self.device_type, dtype=_DTYPES[self.name])

    def scaler(self) -> torch.amp.GradScaler:
        """Return a GradScaler, enabled for fp16 only (bf16 and fp32 need none)."""
        return torch.amp.GradScaler(self.device_type, enabled=self.name == 'fp16')


def resolve_precision(requested: str, device: torch.device) -> Tuple[Precision, List[str]]:
    """Return the precision for ``requested`` (auto, fp32, bf16, fp16) on ``device``, and notes."""
    notes: List[str] = []
    name = requested
    if requested == 'auto':
        if device.type == 'cuda':
            name = 'bf16' if torch.cuda.is_bf16_supported() else 'fp16'
        else:
            name = 'fp32'
    elif requested == 'bf16' and device.type == 'cpu' and native_bf16() is False:
        notes.append('bf16 on a CPU without native bf16 is emulated (about 3x slower than fp32)')
    elif requested == 'fp16' and device.type == 'cpu':
        notes.append('fp16 autocast on the CPU is slow; it is meant for GPUs')
    return Precision(name, device.type), notes
