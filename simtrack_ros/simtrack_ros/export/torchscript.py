"""TorchScript export of the per-frame search forward (for libtorch deployments).

The search graph (:class:`~.onnx_export.SearchGraph`: template tokens and search crop in,
``pred_boxes``, ``score_map_tl``, ``score_map_br``, ``cls_logits`` out) is traced with
``torch.jit.trace``; the batch (targets) dimension stays free. The template encoder is not
included: it is the cheap part and the ONNX template graph serves it. The metadata is the
ONNX export's (:class:`~.metadata.ExportMetadata`, ``opset`` 0), stored as the archive's extra
file :data:`EXTRA_FILE`.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Tuple
import warnings

import torch

from simtrack_ros.export.metadata import (
    ExportError, ExportMetadata, PathLike, temporary_sibling)
from simtrack_ros.export.onnx_export import example_inputs, export_metadata, SearchGraph
from simtrack_ros.model.simtrack import SimTrack

EXTRA_FILE = 'simtrack_ros.json'


def export_torchscript(model: SimTrack, path: PathLike, checkpoint_sha256: str = '') -> Path:
    """Trace ``model``'s search forward and save it (atomically) as a TorchScript archive."""
    target = Path(path)
    device = next(model.parameters()).device
    training = model.training
    model.eval()
    try:
        inputs = tuple(example_inputs(model.config, 'search', device=device).values())
        with torch.no_grad(), warnings.catch_warnings():
            # torch.jit is deprecated in favour of torch.export; tracing still serves libtorch.
            warnings.simplefilter('ignore', DeprecationWarning)
            warnings.simplefilter('ignore', torch.jit.TracerWarning)
            traced = torch.jit.trace(SearchGraph(model), inputs)
            metadata = export_metadata(model, 'search', checkpoint_sha256, opset=0)
            target.parent.mkdir(parents=True, exist_ok=True)
            temp = temporary_sibling(target)
            try:
                torch.jit.save(traced, os.fspath(temp),
                               _extra_files={EXTRA_FILE: metadata.to_json()})
                os.replace(temp, target)
            except BaseException:
                temp.unlink(missing_ok=True)
                raise
    finally:
        model.train(training)
    return target


def load_torchscript(path: PathLike) -> Tuple[torch.jit.ScriptModule, ExportMetadata]:
    """Load a TorchScript export (CPU) and its metadata; ExportError if it is not one."""
    extra = {EXTRA_FILE: ''}
    try:
        with warnings.catch_warnings():
            warnings.simplefilter('ignore', DeprecationWarning)
            module = torch.jit.load(os.fspath(path), map_location='cpu', _extra_files=extra)
    except (RuntimeError, ValueError, OSError) as exc:
        raise ExportError(f'TorchScript export {path}: cannot load it [{str(exc)[:200]}]; '
                          're-export it with simtrack-export --torchscript') from None
    if not extra[EXTRA_FILE]:
        raise ExportError(f'TorchScript export {path}: no {EXTRA_FILE} metadata; re-export it '
                          'with simtrack-export --torchscript')
    return module, ExportMetadata.from_json(extra[EXTRA_FILE], str(path))
