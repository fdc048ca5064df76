"""The part of the exported-model runtimes (ONNX Runtime, OpenVINO) that does not vary.

An exported model is two graphs (:mod:`simtrack_ros.export`): the template graph
(``template``, ``template_anno`` -> ``template_tokens``) and the search graph
(``template_tokens``, ``search`` -> :data:`~.engine.OUTPUT_KEYS`), both with a dynamic
``targets`` dimension. :class:`ExportedEngine` gives them the interface the tracker uses on
:class:`~.engine.InferenceEngine`; a subclass only opens the graphs and runs one of them.
Inputs and outputs live in host memory, so the tracker crops with OpenCV and ``upload`` is
the identity.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
import tempfile
from typing import Dict, Optional, Sequence, TYPE_CHECKING

import numpy as np
import torch

from simtrack_ros.tracking.engine import OUTPUT_KEYS
from simtrack_ros.tracking.precision_policy import PrecisionChoice

if TYPE_CHECKING:
    from simtrack_ros.export.onnx_export import ExportedModel

#: Graph names, as :meth:`ExportedEngine._infer` takes them.
TEMPLATE, SEARCH = 'template', 'search'


def host_array(tensor: torch.Tensor) -> np.ndarray:
    """Return a contiguous float32 numpy array of a (CPU) tensor, for a runtime's input."""
    return np.ascontiguousarray(tensor.detach().cpu().numpy(), dtype=np.float32)


class ExportedEngine(ABC):
    """Runs an exported model's two graphs behind the tracker's engine interface.

    Attributes: ``model`` (the :class:`~simtrack_ros.export.onnx_export.ExportedModel`; the
    tracker reads its config, class names and trained heads), ``device`` (the CPU: where the
    inputs and outputs live), ``precision`` and ``choice`` (the precision and why),
    ``runtime``, ``cuda_graphs`` and ``crop_on_device`` (both False), ``scratch`` (a
    temporary folder holding the exported files when the engine exported them itself; it is
    deleted with the engine).
    """

    runtime = ''
    cuda_graphs = False
    crop_on_device = False

    def __init__(self, exported: 'ExportedModel', precision: PrecisionChoice) -> None:
        self.model = exported
        self.choice = precision
        self.precision = precision.precision
        self.device = torch.device('cpu')
        self.scratch: Optional[tempfile.TemporaryDirectory] = None

    @abstractmethod
    def _infer(self, graph: str, inputs: Dict[str, np.ndarray]) -> Dict[str, np.ndarray]:
        """Run ``graph`` (:data:`TEMPLATE` or :data:`SEARCH`); float32 outputs by name.

        The arrays must not share memory with the runtime (the tracker caches the template
        tokens across runs).
        """

    @abstractmethod
    def describe(self) -> str:
        """One line for the start-up log: runtime, precision, where it runs, the file."""

    def encode_template(self, template: torch.Tensor, template_anno: torch.Tensor
                        ) -> torch.Tensor:
        """Template tokens (B×T×D, CPU float32) for normalised templates and annos."""
        out = self._infer(TEMPLATE, {'template': host_array(template),
                                     'template_anno': host_array(template_anno)})
        return torch.from_numpy(out['template_tokens'])

    def batch_tokens(self, tokens: Sequence[torch.Tensor]) -> torch.Tensor:
        """Concatenate cached per-target template tokens into one batch."""
        return torch.cat(list(tokens), dim=0)

    def run(self, template_tokens: torch.Tensor, search: torch.Tensor,
            run_cls_head: bool = True) -> Dict[str, torch.Tensor]:
        """Batched search forward; returns :data:`~.engine.OUTPUT_KEYS` as CPU float32.

        The graph always computes the class logits; they are returned only with
        ``run_cls_head``, as the torch runtime does.
        """
        out = self._infer(SEARCH, {'template_tokens': host_array(template_tokens),
                                   'search': host_array(search)})
        keys = OUTPUT_KEYS if run_cls_head else tuple(k for k in OUTPUT_KEYS
                                                      if k != 'cls_logits')
        return {key: torch.from_numpy(out[key]) for key in keys}

    def synchronize(self) -> None:
        """Nothing to wait for: every run returns its outputs in host memory."""

    def upload(self, tensor: torch.Tensor) -> torch.Tensor:
        """Return ``tensor``: the runtimes take their inputs from host memory."""
        return tensor

    def release(self) -> None:
        """Nothing to release: exported runtimes capture no CUDA Graphs."""

    def offload(self) -> None:
        """Keep the compiled graphs (rebuilding them takes seconds); a no-op."""

    def reload(self) -> None:
        """Nothing to move back (see :meth:`offload`)."""
