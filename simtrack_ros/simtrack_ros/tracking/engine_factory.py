"""Build the engine a tracker runs: the runtime and precision chosen from the options.

Runtime ``auto``: an exported model runs with OpenVINO when it is installed, else with ONNX
Runtime; a PyTorch model (a .pth checkpoint) runs with torch, so the default for a checkpoint
stays the exact torch path and the CPU fast path is ``runtime='openvino'`` (or an exported
file). A PyTorch model with an exported runtime is exported first, through the export cache
(:mod:`simtrack_ros.export.cache`): beside its checkpoint when the checkpoint file is given (a
restart does not export again), else in a temporary folder the engine owns (the model is saved
there first). The precision comes from :func:`~.precision_policy.choose_precision`; int8 runs the
``int8-dynamic`` file with ONNX Runtime and the ``int8-static`` one with OpenVINO. An exported
file that holds int8 weights runs as int8 (with ``precision`` 'auto' or 'int8').

Every engine has ``runtime``, ``precision``, ``choice`` (the precision and why) and
``describe()``.
"""
from __future__ import annotations

import importlib.util
from pathlib import Path
import tempfile
from typing import Optional, Tuple, TYPE_CHECKING, Union
import warnings

import torch
from torch import nn

from simtrack_ros.tracking.engine import EngineOptions, InferenceEngine
from simtrack_ros.tracking.exported_engine import ExportedEngine
from simtrack_ros.tracking.precision_policy import (
    choose_precision, INT8_FILE, PrecisionChoice)

if TYPE_CHECKING:
    from simtrack_ros.export.onnx_export import ExportedModel

Engine = Union[InferenceEngine, ExportedEngine]


def resolve_runtime(requested: str, exported: bool) -> str:
    """Return the concrete runtime for ``EngineOptions.runtime`` and the kind of model."""
    if requested != 'auto':
        return requested
    if not exported:
        return 'torch'
    return 'openvino' if importlib.util.find_spec('openvino') is not None else 'onnxruntime'


def _device(runtime: str, spec: str) -> torch.device:
    if runtime == 'onnxruntime':
        from simtrack_ros.tracking.onnxruntime_engine import onnxruntime_device
        return onnxruntime_device(spec)
    return torch.device('cpu')


def _file_choice(exported: 'ExportedModel', requested: str, runtime: str,
                 device: torch.device) -> PrecisionChoice:
    """Choose the precision for an exported file: what it holds decides int8."""
    held = exported.precision
    width = exported.config.width
    if held == 'fp32':
        if requested == 'int8':
            raise ValueError(f'{exported.search} holds fp32 weights; precision int8 needs an '
                             'int8 export (simtrack-export CHECKPOINT --precision int8-static '
                             'or int8-dynamic) or the .pth checkpoint')
        return choose_precision(requested, runtime, device, width)
    if requested not in ('auto', 'int8'):
        raise ValueError(f'{exported.search} holds {held} weights; precision {requested!r} '
                         "needs the fp32 export (or use precision 'auto' or 'int8')")
    choose_precision('int8', runtime, device, width)     # checks the hardware
    return PrecisionChoice('int8', f'{exported.search.name} holds {held} weights')


def _export(model: nn.Module, precision: str, runtime: str, checkpoint: Optional[Path]
            ) -> Tuple['ExportedModel', Optional[tempfile.TemporaryDirectory]]:
    """Export ``model`` for ``runtime`` at ``precision`` through the export cache.

    Without ``checkpoint`` the model is saved into a temporary folder first, whose cache then
    holds the export; the folder is returned for the engine to own.
    """
    from simtrack_ros.export.cache import cached_export
    from simtrack_ros.model.checkpoint import save_checkpoint
    file_precision = INT8_FILE[runtime] if precision == 'int8' else 'fp32'
    scratch = None
    if checkpoint is None:
        scratch = tempfile.TemporaryDirectory(prefix='simtrack_export_')
        checkpoint = save_checkpoint(model, Path(scratch.name) / 'model.pth')
    return cached_export(Path(checkpoint), file_precision, model=model), scratch


def build_engine(model: Union[nn.Module, 'ExportedModel'], options: EngineOptions,
                 checkpoint: Optional[Path] = None) -> Engine:
    """Build the engine for ``model`` (a SimTrack-like module or an exported model).

    ``checkpoint``: the file ``model`` was loaded from (the key of the export cache). Raises
    ValueError for a combination that cannot run (an exported model with runtime 'torch', a
    refused precision, see :mod:`.precision_policy`).
    """
    exported = not isinstance(model, nn.Module)
    runtime = resolve_runtime(options.runtime, exported)
    if runtime == 'torch':
        if exported:
            raise ValueError(f"{model.search} is an exported model: runtime 'torch' needs the "
                             "PyTorch checkpoint (.pth); use runtime 'auto', 'onnxruntime' or "
                             "'openvino' for it")
        return InferenceEngine(model, options)
    if options.cuda_graphs or options.crop_on_device:
        warnings.warn(f'cuda_graphs and crop_on_device apply to the torch runtime; {runtime} '
                      'runs without them', RuntimeWarning, stacklevel=2)
    device = _device(runtime, options.device)
    scratch = None
    if exported:
        choice = _file_choice(model, options.precision, runtime, device)
    else:
        choice = choose_precision(options.precision, runtime, device, model.config.width)
        model, scratch = _export(model, choice.precision, runtime, checkpoint)
    if runtime == 'onnxruntime':
        from simtrack_ros.tracking.onnxruntime_engine import OnnxRuntimeEngine
        engine: ExportedEngine = OnnxRuntimeEngine(model, choice, device=options.device)
    else:
        from simtrack_ros.tracking.openvino_engine import OpenVinoEngine
        engine = OpenVinoEngine(model, choice)
    engine.scratch = scratch
    return engine
