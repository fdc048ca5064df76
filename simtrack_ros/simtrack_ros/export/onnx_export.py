"""ONNX export of SimTrack: the per-frame search graph and its template graph, with metadata.

Two graphs, written by the dynamo exporter (``torch.onnx.export(..., dynamo=True)``, opset 18
by default) with a dynamic first dimension :data:`TARGETS_DIM`:

* search graph ``<name>.onnx`` (``SimTrack.forward_search``, both heads): inputs
  ``template_tokens`` [targets, Tt, width] and ``search`` [targets, 3, S, S] (the normalised
  crop the tracker feeds the torch model); outputs ``pred_boxes`` [targets, 1, 4],
  ``score_map_tl`` and ``score_map_br`` [targets, G, G], ``cls_logits`` [targets, C];
* template graph ``<name>.template.onnx`` beside it (``SimTrack.encode_template``): inputs
  ``template`` [targets, 3, T, T], ``template_anno`` [targets, 4]; output
  ``template_tokens``.

Each file carries :class:`~.metadata.ExportMetadata`; :func:`load_exported` checks a pair
against each other and against the config before a runtime gets it.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
import logging
import os
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Set, Tuple
import warnings

import numpy as np
import onnx
import onnxruntime
import torch
from torch import nn

from simtrack_ros.export.metadata import (
    ExportError, ExportMetadata, load_onnx, metadata_of, PathLike, save_onnx, set_metadata)
from simtrack_ros.model.challenge_calibration import ChallengeCalibration
from simtrack_ros.model.config import SimTrackConfig
from simtrack_ros.model.simtrack import SimTrack

DEFAULT_OPSET = 18
#: Name of the dynamic first dimension of every input and output.
TARGETS_DIM = 'targets'
#: Largest number of targets the exporter is asked to support (ONNX itself has no limit).
MAX_TARGETS = 64
SEARCH_INPUTS = ('template_tokens', 'search')
SEARCH_OUTPUTS = ('pred_boxes', 'score_map_tl', 'score_map_br', 'cls_logits')
TEMPLATE_INPUTS = ('template', 'template_anno')
TEMPLATE_OUTPUTS = ('template_tokens',)
TEMPLATE_SUFFIX = '.template.onnx'
GUARD_SUFFIX = '.guard.json'
#: Shape per tensor; None marks the dynamic targets dimension.
Shape = Tuple[Optional[int], ...]


def template_path(search_path: PathLike) -> Path:
    """Return the template graph of a search graph: ``<name>.template.onnx`` beside it."""
    return search_file(search_path).with_suffix(TEMPLATE_SUFFIX)


def guard_path(search_path: PathLike, precision: Optional[str] = None) -> Path:
    """Return where the accuracy guard's result for a search graph is.

    ``<name>.guard.json`` for the precision the file holds (``precision`` None), else
    ``<name>.<precision>.guard.json`` (bf16 on an fp32 file): each verdict has its own file.
    """
    search = search_file(search_path)
    suffix = GUARD_SUFFIX if precision is None else f'.{precision}{GUARD_SUFFIX}'
    return search.with_suffix(suffix)


def search_file(path: PathLike) -> Path:
    """Return ``path`` as a search graph's path; ExportError unless it ends in ``.onnx``."""
    path = Path(path)
    if path.suffix != '.onnx':
        raise ExportError(f'exported model {path}: the search graph file must end in .onnx')
    return path


def graph_signature(config: SimTrackConfig, graph: str
                    ) -> Tuple[Dict[str, Shape], Dict[str, Shape]]:
    """Return (inputs, outputs) of a graph ('search' or 'template'): name -> shape, in order."""
    tokens = (None, config.template_grid ** 2 + config.foveal_grid ** 2, config.width)
    if graph == 'template':
        size = config.template_size
        return ({'template': (None, 3, size, size), 'template_anno': (None, 4)},
                {'template_tokens': tokens})
    size, grid = config.search_size, config.search_grid
    return ({'template_tokens': tokens, 'search': (None, 3, size, size)},
            {'pred_boxes': (None, 1, 4), 'score_map_tl': (None, grid, grid),
             'score_map_br': (None, grid, grid), 'cls_logits': (None, config.num_classes)})


@dataclass(frozen=True)
class ExportedModel:
    """What the tracker needs to run an exported model.

    Duck-types the :class:`~simtrack_ros.model.simtrack.SimTrack` attributes the tracker reads
    (``config``, ``class_names``, ``multi_label``, ``trained_heads``, ``cls_head_trained``,
    ``challenge_calibration``).
    ``metadata`` is the search graph's.
    """

    search: Path
    template: Path
    metadata: ExportMetadata

    @cached_property
    def config(self) -> SimTrackConfig:
        """The model configuration of the exported graphs."""
        return self.metadata.model_config()

    @property
    def class_names(self) -> Tuple[str, ...]:
        """Class names in output order."""
        return self.metadata.class_names

    @property
    def multi_label(self) -> bool:
        """True: per-class sigmoid; False: softmax over the classes."""
        return self.metadata.multi_label

    @property
    def trained_heads(self) -> Set[str]:
        """Heads that hold trained weights ('box', 'cls')."""
        return set(self.metadata.trained_heads)

    @property
    def cls_head_trained(self) -> bool:
        """Whether the classification head holds trained weights."""
        return 'cls' in self.metadata.trained_heads

    @cached_property
    def challenge_calibration(self) -> Optional[ChallengeCalibration]:
        """The challenge calibration exported with the model, if any."""
        return self.metadata.calibration()

    @property
    def precision(self) -> str:
        """What the search graph holds: 'fp32', 'int8-dynamic' or 'int8-static'."""
        return self.metadata.precision

    def guard_file(self, precision: str) -> Path:
        """Where the accuracy guard's result for this search graph run at ``precision`` is.

        ``<name>.guard.json`` when ``precision`` is the one the file holds (fp32 for an fp32
        file, int8 for an int8 one), else ``<name>.<precision>.guard.json``.
        """
        holds = 'fp32' if self.precision == 'fp32' else 'int8'
        return guard_path(self.search, None if precision == holds else precision)


class SearchGraph(nn.Module):
    """``forward_search`` with both heads, its outputs as a tuple in :data:`SEARCH_OUTPUTS`."""

    def __init__(self, model: SimTrack) -> None:
        super().__init__()
        self.model = model

    def forward(self, template_tokens: torch.Tensor, search: torch.Tensor
                ) -> Tuple[torch.Tensor, ...]:
        out = self.model.forward_search(template_tokens, search)
        return tuple(out[name] for name in SEARCH_OUTPUTS)


class TemplateGraph(nn.Module):
    """The template graph: ``encode_template`` (the tokens the tracker caches per target)."""

    def __init__(self, model: SimTrack) -> None:
        super().__init__()
        self.model = model

    def forward(self, template: torch.Tensor, template_anno: torch.Tensor) -> torch.Tensor:
        return self.model.encode_template(template, template_anno)


def example_inputs(config: SimTrackConfig, graph: str, targets: int = 2, seed: int = 0,
                   device: torch.device = torch.device('cpu')) -> Dict[str, torch.Tensor]:
    """Seeded random inputs of a graph for ``targets`` targets (anno: a plausible box)."""
    generator = torch.Generator().manual_seed(seed)
    inputs = {}
    for name, shape in graph_signature(config, graph)[0].items():
        value = torch.randn((targets,) + shape[1:], generator=generator)
        if name == 'template_anno':
            value = torch.tensor([[0.25, 0.25, 0.5, 0.5]]).repeat(targets, 1)
        inputs[name] = value.to(device)
    return inputs


def _export_graph(module: nn.Module, inputs: Dict[str, torch.Tensor], outputs: Sequence[str],
                  opset: int) -> onnx.ModelProto:
    targets = torch.export.Dim(TARGETS_DIM, min=1, max=MAX_TARGETS)
    # It logs a warning per torchvision op it cannot register when torchvision is absent (our
    # graphs use none of them). The logger level is process-wide while the export runs.
    registration = logging.getLogger('torch.onnx._internal.exporter._registration')
    level = registration.level
    registration.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), torch.no_grad():
            # The exporter warns about deprecated pytree specs and shared axis names; not ours.
            warnings.simplefilter('ignore', FutureWarning)
            warnings.simplefilter('ignore', UserWarning)
            program = torch.onnx.export(
                module, tuple(inputs.values()), None, dynamo=True, opset_version=opset,
                input_names=list(inputs), output_names=list(outputs), verbose=False,
                dynamic_shapes={name: {0: targets} for name in inputs})
    finally:
        registration.setLevel(level)
    return program.model_proto


def export_metadata(model: SimTrack, graph: str, checkpoint_sha256: str = '',
                    opset: int = DEFAULT_OPSET, precision: str = 'fp32') -> ExportMetadata:
    """Return the metadata of a graph exported from ``model``."""
    return ExportMetadata(
        graph=graph, config=model.config.to_dict(), class_names=tuple(model.class_names),
        multi_label=bool(model.config.multi_label),
        trained_heads=tuple(sorted(model.trained_heads)), precision=precision,
        checkpoint_sha256=checkpoint_sha256, opset=int(opset), torch_version=torch.__version__,
        challenge_calibration=(None if model.challenge_calibration is None
                               else model.challenge_calibration.to_dict()))


def export_onnx(model: SimTrack, search_path: PathLike, checkpoint_sha256: str = '',
                opset: int = DEFAULT_OPSET) -> ExportedModel:
    """Export ``model`` as ``search_path`` (.onnx) and its template graph beside it (fp32).

    Each file is written atomically (temporary sibling, then rename), template first. The
    model runs in eval mode during the export (its mode is restored afterwards).
    """
    search = search_file(search_path)
    if opset < DEFAULT_OPSET:
        raise ValueError(f'opset {opset} is not supported: the dynamo exporter needs '
                         f'{DEFAULT_OPSET} or newer')
    config = model.config
    device = next(model.parameters()).device
    training = model.training
    model.eval()
    try:
        graphs = (('template', template_path(search), TemplateGraph(model), TEMPLATE_OUTPUTS),
                  ('search', search, SearchGraph(model), SEARCH_OUTPUTS))
        for graph, path, module, outputs in graphs:
            proto = _export_graph(module, example_inputs(config, graph, device=device),
                                  outputs, opset)
            set_metadata(proto, export_metadata(model, graph, checkpoint_sha256, opset))
            save_onnx(proto, path)
    finally:
        model.train(training)
    return ExportedModel(search, template_path(search),
                         export_metadata(model, 'search', checkpoint_sha256, opset))


def _shape(value: onnx.ValueInfoProto) -> Shape:
    dims = value.type.tensor_type.shape.dim
    return tuple(d.dim_value if d.HasField('dim_value') else None for d in dims)


def _check_signature(proto: onnx.ModelProto, config: SimTrackConfig, graph: str,
                     source: str) -> None:
    """Raise ExportError unless the graph's names and shapes are what ``config`` gives."""
    expected_in, expected_out = graph_signature(config, graph)
    initializers = {init.name for init in proto.graph.initializer}
    found_in = {v.name: _shape(v) for v in proto.graph.input if v.name not in initializers}
    found_out = {v.name: _shape(v) for v in proto.graph.output}
    for kind, expected, found in (('inputs', expected_in, found_in),
                                  ('outputs', expected_out, found_out)):
        if list(found) != list(expected):
            raise ExportError(f'exported model {source}: {graph} graph {kind} are '
                              f'{list(found)}, expected {list(expected)}; re-export it with '
                              'simtrack-export')
        for name, shape in expected.items():
            if found[name] != shape:
                raise ExportError(
                    f'exported model {source}: {name} has shape {found[name]} but its config '
                    f'{config.name!r} gives {shape} (None: the dynamic {TARGETS_DIM} '
                    'dimension); re-export it with simtrack-export')


def load_exported(path: PathLike) -> ExportedModel:
    """Open an exported search graph and its template graph, checked; ExportError if unusable.

    Checked: both files readable ONNX with metadata, graph kinds, the template's config and
    checkpoint hash equal to the search graph's, input/output names and static dimensions
    equal to what the config gives, the targets dimension dynamic.
    """
    search = search_file(path)
    proto = load_onnx(search)
    metadata = metadata_of(proto, str(search))
    if metadata.graph != 'search':
        raise ExportError(f'exported model {search}: it is a {metadata.graph} graph; pass the '
                          f'search graph (the .onnx file beside it without {TEMPLATE_SUFFIX})')
    config = metadata.model_config()
    _check_signature(proto, config, 'search', str(search))
    del proto
    template = template_path(search)
    if not template.is_file():
        raise ExportError(f'exported model {search}: its template graph {template} is missing; '
                          're-export it with simtrack-export')
    template_proto = load_onnx(template)
    template_metadata = metadata_of(template_proto, str(template))
    for field in ('graph', 'config', 'checkpoint_sha256'):
        found = getattr(template_metadata, field)
        wanted = 'template' if field == 'graph' else getattr(metadata, field)
        if found != wanted:
            raise ExportError(f'exported model {search}: its template graph {template} does '
                              f'not belong to it ({field} {_short(found)} != {_short(wanted)}); '
                              're-export both with simtrack-export')
    _check_signature(template_proto, config, 'template', str(template))
    return ExportedModel(search, template, metadata)


def _short(value: object) -> str:
    if isinstance(value, dict):
        return f'{value.get("name")!r} (width {value.get("width")})'
    return repr(value) if value else "''"


def onnxruntime_session(path: PathLike, threads: Optional[int] = None
                        ) -> onnxruntime.InferenceSession:
    """Open an ONNX Runtime CPU session of an ONNX file (``threads``: intra-op threads)."""
    options = onnxruntime.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
    return onnxruntime.InferenceSession(os.fspath(path), options,
                                        providers=['CPUExecutionProvider'])


def run_onnx(path: PathLike, inputs: Dict[str, np.ndarray]) -> List[np.ndarray]:
    """Run an ONNX file once on the CPU (float32 inputs by name); outputs in graph order."""
    session = onnxruntime_session(path)
    return session.run(None, {k: np.ascontiguousarray(v, np.float32) for k, v in inputs.items()})
