"""Inference engine: device, precision (autocast) and optional CUDA Graphs around the model.

The engine runs the two model calls the tracker needs, ``encode_template`` (once per target)
and ``forward_search`` (once per frame, all targets batched), in ``torch.inference_mode`` and
returns the search outputs as CPU float32 tensors. This is the ``torch`` runtime;
:mod:`.engine_factory` picks it or an exported-model runtime (:mod:`.onnxruntime_engine`,
:mod:`.openvino_engine`) from ``EngineOptions.runtime``.

Device and precision rules:

* ``device='auto'`` takes CUDA when available and otherwise falls back to the CPU with a
  ``RuntimeWarning``; an explicit ``'cuda'``/``'cuda:N'`` without that device is an error.
* ``precision='auto'`` (the default) is resolved by :mod:`.precision_policy`: bf16 only on
  hardware with native bf16 and for a model wide enough to gain from it, fp32 elsewhere.
* ``precision='fp16'`` needs CUDA: with ``device='cpu'`` it is a ``ValueError``; when
  ``'auto'`` resolves to the CPU it falls back to fp32 with a warning. bf16 is faster than
  fp32 only on CPUs with native bf16 (AVX512-BF16/AMX); elsewhere it is emulated and about 3x
  slower, and ``precision='bf16'`` on such a CPU runs with a ``RuntimeWarning`` saying so
  (:mod:`.cpu_features`). ``'int8'`` needs an exported runtime.
* ``cuda_graphs`` needs CUDA likewise (error with ``device='cpu'``, warning and eager with
  ``'auto'`` on a CPU). One graph is captured per input shape (i.e. per number of targets);
  all graphs of one engine share one CUDA Graph memory pool. ``InferenceEngine.release``
  drops the graphs and their buffers; ``offload`` also moves the weights to host memory and
  returns the freed device memory to the driver (e.g. when the node deactivates); the next
  ``run`` captures again.

The engine is not thread-safe: its owner (:class:`~.tracker.Tracker`) serialises the calls.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass
import re
from typing import Any, Callable, ContextManager, Dict, Optional, Sequence, Tuple
import warnings

import torch
from torch import nn

from simtrack_ros.tracking.cpu_features import describe_cpu, native_bf16
from simtrack_ros.tracking.precision_policy import (
    choose_precision, EXPORTED_RUNTIMES, PRECISION_NAMES, PrecisionChoice, RUNTIME_NAMES)

#: Autocast dtype per precision name (None: plain fp32).
PRECISIONS: Dict[str, Optional[torch.dtype]] = {
    'fp32': None, 'fp16': torch.float16, 'bf16': torch.bfloat16}
#: Model outputs the engine returns (others, e.g. features, stay on the device).
OUTPUT_KEYS = ('pred_boxes', 'score_map_tl', 'score_map_br', 'cls_logits')
#: Eager runs on a side stream before a CUDA Graph capture (lazy init, cuBLAS workspaces).
GRAPH_WARMUP_RUNS = 3
_DEVICE_SPEC = re.compile(r'^(auto|cpu|cuda(:\d+)?)$')


@dataclass(frozen=True)
class EngineOptions:
    """Where and how the model runs.

    Attributes:
        device: ``'auto'``, ``'cpu'``, ``'cuda'`` or ``'cuda:N'``.
        precision: ``'auto'`` (chosen by the hardware, :mod:`.precision_policy`), ``'fp32'``,
            ``'fp16'`` (CUDA only), ``'bf16'`` or ``'int8'`` (exported runtimes only).
        cuda_graphs: capture the per-frame forward as a CUDA Graph (CUDA only).
        crop_on_device: crop on the model's device from one frame upload (True; the same
            pixels as OpenCV's, bit for bit), or with OpenCV on the CPU and upload the crops
            (False); None picks True on CUDA, False on the CPU (where OpenCV is 5-13x faster).
        runtime: ``'auto'`` (an exported model: OpenVINO when installed, else ONNX Runtime; a
            PyTorch model: torch), ``'torch'``, ``'onnxruntime'`` or ``'openvino'``.
    """

    device: str = 'auto'
    precision: str = 'auto'
    cuda_graphs: bool = False
    crop_on_device: Optional[bool] = None
    runtime: str = 'auto'

    def __post_init__(self) -> None:
        if not isinstance(self.device, str) or not _DEVICE_SPEC.match(self.device):
            raise ValueError(
                f"device must be 'auto', 'cpu', 'cuda' or 'cuda:N', got {self.device!r}")
        if self.precision not in PRECISION_NAMES:
            raise ValueError(f'precision must be one of {", ".join(PRECISION_NAMES)}, '
                             f'got {self.precision!r}')
        if self.runtime not in RUNTIME_NAMES:
            raise ValueError(f'runtime must be one of {", ".join(RUNTIME_NAMES)}, '
                             f'got {self.runtime!r}')
        if not isinstance(self.cuda_graphs, bool):
            raise ValueError(f'cuda_graphs must be a bool, got {self.cuda_graphs!r}')
        if self.crop_on_device is not None and not isinstance(self.crop_on_device, bool):
            raise ValueError(
                f'crop_on_device must be True, False or None, got {self.crop_on_device!r}')
        if self.device == 'cpu' and self.precision == 'fp16':
            raise ValueError("precision 'fp16' needs a CUDA device; use 'bf16' or 'fp32' on "
                             'the CPU')
        if self.device == 'cpu' and self.cuda_graphs:
            raise ValueError("cuda_graphs needs a CUDA device, but device is 'cpu'")
        if self.runtime == 'torch' and self.precision == 'int8':
            raise ValueError("precision 'int8' needs runtime 'onnxruntime' or 'openvino', not "
                             "'torch'")
        if self.runtime in EXPORTED_RUNTIMES and self.cuda_graphs:
            raise ValueError(f"cuda_graphs applies to runtime 'torch', not {self.runtime!r}")
        if self.runtime == 'openvino' and self.device.startswith('cuda'):
            raise ValueError(f"runtime 'openvino' runs on the CPU; device {self.device!r} "
                             "needs runtime 'torch' or 'onnxruntime'")


def resolve_device(spec: str) -> torch.device:
    """Turn a device option into a concrete ``torch.device`` (see the module docstring)."""
    if not isinstance(spec, str) or not _DEVICE_SPEC.match(spec):
        raise ValueError(f"device must be 'auto', 'cpu', 'cuda' or 'cuda:N', got {spec!r}")
    if spec == 'auto':
        if torch.cuda.is_available():
            return torch.device('cuda', torch.cuda.current_device())
        warnings.warn("device 'auto': CUDA is not available, running on the CPU",
                      RuntimeWarning, stacklevel=2)
        return torch.device('cpu')
    device = torch.device(spec)
    if device.type != 'cuda':
        return device
    if not torch.cuda.is_available():
        raise RuntimeError(f'device {spec!r} requested, but CUDA is not available '
                           f'(torch {torch.__version__})')
    index = torch.cuda.current_device() if device.index is None else device.index
    if index >= torch.cuda.device_count():
        raise RuntimeError(f'device {spec!r} requested, but only {torch.cuda.device_count()} '
                           'CUDA device(s) exist')
    return torch.device('cuda', index)


class _CapturedForward:
    """``forward`` captured as one CUDA Graph for fixed input shapes (CUDA only).

    The graph's memory comes from ``pool`` (a ``torch.cuda.graph_pool_handle()``), which the
    engine shares between all its graphs; the static inputs are ordinary allocations.
    """

    def __init__(self, forward: Callable[[torch.Tensor, torch.Tensor], Dict[str, torch.Tensor]],
                 tokens: torch.Tensor, search: torch.Tensor, pool: Any) -> None:
        self.tokens = tokens.clone()
        self.search = search.clone()
        stream = torch.cuda.Stream(device=tokens.device)
        stream.wait_stream(torch.cuda.current_stream(tokens.device))
        with torch.cuda.stream(stream):
            for _ in range(GRAPH_WARMUP_RUNS):
                forward(self.tokens, self.search)
        torch.cuda.current_stream(tokens.device).wait_stream(stream)
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph, pool=pool):
            self.outputs = forward(self.tokens, self.search)

    def __call__(self, tokens: torch.Tensor, search: torch.Tensor) -> Dict[str, torch.Tensor]:
        self.tokens.copy_(tokens)
        self.search.copy_(search)
        self.graph.replay()
        return self.outputs

    def reset(self) -> None:
        """Free the graph and drop its static inputs and outputs."""
        self.outputs = {}
        self.tokens = self.search = None
        self.graph.reset()


class InferenceEngine:
    """Runs a SimTrack-like model on one device with the chosen precision (runtime 'torch').

    Attributes (resolved from the options): ``device``, ``precision``, ``choice`` (the
    precision and why), ``cuda_graphs``, ``crop_on_device``.
    """

    runtime = 'torch'

    def __init__(self, model: nn.Module, options: Optional[EngineOptions] = None) -> None:
        self.options = options or EngineOptions()
        self.device = resolve_device(self.options.device)
        on_cuda = self.device.type == 'cuda'
        if self.options.precision == 'fp16' and not on_cuda:
            warnings.warn('fp16 needs CUDA: falling back to fp32 on the CPU (bf16 is the fast '
                          'CPU precision)', RuntimeWarning, stacklevel=2)
            self.choice = PrecisionChoice('fp32', 'fp16 needs CUDA: fp32 on the CPU')
        else:
            self.choice = choose_precision(self.options.precision, self.runtime, self.device,
                                           model.config.width)
        self.precision = self.choice.precision
        if self.precision == 'bf16' and not on_cuda and native_bf16() is False:
            warnings.warn(f'bf16 on a CPU without native bf16 (no AVX512-BF16 or AMX: '
                          f'{describe_cpu()}) is emulated and runs about 3x slower than fp32; '
                          "use precision 'fp32' here", RuntimeWarning, stacklevel=2)
        self.cuda_graphs = self.options.cuda_graphs and on_cuda
        if self.options.cuda_graphs and not on_cuda:
            warnings.warn('cuda_graphs needs CUDA: running eagerly on the CPU',
                          RuntimeWarning, stacklevel=2)
        self.crop_on_device = (on_cuda if self.options.crop_on_device is None
                               else self.options.crop_on_device)
        self.model = model.to(self.device).eval()
        self._graphs: Dict[Tuple, _CapturedForward] = {}
        #: CUDA Graph memory pool shared by every graph in ``_graphs`` (created at the first
        #: capture).
        self._graph_pool: Any = None

    def describe(self) -> str:
        """One line for the start-up log: runtime, device and precision."""
        graphs = ', CUDA Graphs' if self.cuda_graphs else ''
        return f'torch {torch.__version__} on {self.device}, {self.precision}{graphs}'

    def _autocast(self) -> ContextManager:
        dtype = PRECISIONS[self.precision]
        if dtype is None:
            return contextlib.nullcontext()
        # Autocast's weight-cast cache must be off while a CUDA Graph is captured.
        return torch.autocast(self.device.type, dtype=dtype, cache_enabled=not self.cuda_graphs)

    def synchronize(self) -> None:
        """Wait for queued device work (for stage timings); a no-op on the CPU."""
        if self.device.type == 'cuda':
            torch.cuda.synchronize(self.device)

    def upload(self, tensor: torch.Tensor) -> torch.Tensor:
        """Copy a CPU tensor to the engine's device (through pinned memory on CUDA)."""
        if self.device.type == 'cuda':
            # torch's caching host allocator keeps the pinned buffer until the copy is done.
            return tensor.pin_memory().to(self.device, non_blocking=True)
        return tensor.to(self.device)

    def release(self) -> None:
        """Drop the captured CUDA Graphs, their static buffers and their memory pool.

        The engine stays usable: the next :meth:`run` captures again. The freed blocks go back
        to torch's caching allocator (:meth:`offload` returns them to the driver). A no-op
        without graphs (e.g. on the CPU).
        """
        graphs, self._graphs = self._graphs, {}
        self._graph_pool = None
        if graphs:
            torch.cuda.synchronize(self.device)
            for graph in graphs.values():
                graph.reset()

    def offload(self) -> None:
        """Free the device: drop the CUDA Graphs and move the weights to host memory.

        Template tokens cut before are invalid afterwards; :meth:`reload` brings the weights
        back. The freed device memory is returned to the driver.
        """
        self.release()
        self.model.to('cpu')
        if self.device.type == 'cuda':
            torch.cuda.empty_cache()

    def reload(self) -> None:
        """Move the weights back to the engine's device after :meth:`offload`."""
        self.model.to(self.device)

    @torch.inference_mode()
    def encode_template(self, template: torch.Tensor, template_anno: torch.Tensor
                        ) -> torch.Tensor:
        """Template tokens (B×T×D, kept on the device) for normalised templates and annos."""
        with self._autocast():
            return self.model.encode_template(template.to(self.device),
                                              template_anno.to(self.device))

    @torch.inference_mode()
    def batch_tokens(self, tokens: Sequence[torch.Tensor]) -> torch.Tensor:
        """Concatenate cached per-target template tokens into one batch."""
        return torch.cat(list(tokens), dim=0)

    def _forward(self, run_cls_head: bool
                 ) -> Callable[[torch.Tensor, torch.Tensor], Dict[str, torch.Tensor]]:
        def forward(tokens: torch.Tensor, search: torch.Tensor) -> Dict[str, torch.Tensor]:
            with self._autocast():
                return self.model.forward_search(tokens, search, run_box_head=True,
                                                 run_cls_head=run_cls_head)
        return forward

    @torch.inference_mode()
    def run(self, template_tokens: torch.Tensor, search: torch.Tensor,
            run_cls_head: bool = True) -> Dict[str, torch.Tensor]:
        """Batched search forward; returns :data:`OUTPUT_KEYS` present as CPU float32."""
        search = search.to(self.device)
        if self.cuda_graphs:
            key = (tuple(template_tokens.shape), template_tokens.dtype, tuple(search.shape),
                   run_cls_head)
            if key not in self._graphs:
                with torch.cuda.device(self.device):
                    # One pool for all graphs (one per target count) instead of a private
                    # pool each. Sharing is safe because replays never overlap (the tracker
                    # runs them one at a time under its lock) and every replay's outputs are
                    # copied out to the CPU below, before any other graph replays and may
                    # reuse that memory.
                    if self._graph_pool is None:
                        self._graph_pool = torch.cuda.graph_pool_handle()
                    self._graphs[key] = _CapturedForward(
                        self._forward(run_cls_head), template_tokens, search, self._graph_pool)
            out = self._graphs[key](template_tokens, search)
        else:
            out = self._forward(run_cls_head)(template_tokens, search)
        return {key: out[key].detach().float().cpu() for key in OUTPUT_KEYS if key in out}
