"""ONNX Runtime engine: runs an exported model on the CPU, or on a GPU where installed.

Execution providers: ``device='cpu'`` runs the CPU provider only; ``'auto'`` adds the
TensorRT and CUDA providers when the installed ONNX Runtime has them (``onnxruntime-gpu``);
``'cuda'``/``'cuda:N'`` requires one of them. fp16 needs the TensorRT provider (it builds an
fp16 engine from the fp32 file; its engines are cached beside the file); int8 runs the
``int8-dynamic`` file (ONNX Runtime has no bf16 mode). The intra-op threads do not spin while
they wait, which keeps the node from starving others on a shared CPU.
"""
from __future__ import annotations

from typing import Dict, List, Optional, Tuple, TYPE_CHECKING

import numpy as np
import onnxruntime as ort
import torch

from simtrack_ros.tracking.exported_engine import ExportedEngine, SEARCH, TEMPLATE
from simtrack_ros.tracking.precision_policy import PrecisionChoice

if TYPE_CHECKING:
    from simtrack_ros.export.onnx_export import ExportedModel

CPU_PROVIDER = 'CPUExecutionProvider'
#: GPU execution providers, in order of preference.
GPU_PROVIDERS = ('TensorrtExecutionProvider', 'CUDAExecutionProvider')
#: Provider with its options, as ``InferenceSession(providers=...)`` takes them.
Provider = Tuple[str, Dict[str, object]]


def onnxruntime_providers(device: str) -> List[str]:
    """Return provider names for an ``EngineOptions.device``: GPU ones first, then the CPU.

    ValueError for ``'cuda'``/``'cuda:N'`` when this ONNX Runtime has no GPU provider.
    """
    available = ort.get_available_providers()
    gpu = [] if device == 'cpu' else [name for name in GPU_PROVIDERS if name in available]
    if device.startswith('cuda') and not gpu:
        raise ValueError(f'device {device!r}: this ONNX Runtime ({ort.__version__}) has no '
                         f'CUDA or TensorRT provider (it has {", ".join(available)}); install '
                         "onnxruntime-gpu, or use device 'cpu'")
    return gpu + [CPU_PROVIDER]


def onnxruntime_device(device: str) -> torch.device:
    """Return where ONNX Runtime computes for an ``EngineOptions.device``."""
    if onnxruntime_providers(device)[0] == CPU_PROVIDER:
        return torch.device('cpu')
    index = device.partition(':')[2]
    return torch.device('cuda', int(index) if index else 0)


class OnnxRuntimeEngine(ExportedEngine):
    """Runs an :class:`~simtrack_ros.export.onnx_export.ExportedModel` with ONNX Runtime.

    ``threads``: intra-op threads (None: ONNX Runtime's default, one per physical core);
    ``device``: an ``EngineOptions.device`` choosing the providers (see the module docstring).
    """

    runtime = 'onnxruntime'

    def __init__(self, exported: 'ExportedModel', precision: PrecisionChoice,
                 threads: Optional[int] = None, device: str = 'cpu') -> None:
        super().__init__(exported, precision)
        names = onnxruntime_providers(device)
        if self.precision == 'fp16' and GPU_PROVIDERS[0] not in names:
            raise ValueError(f'{exported.search}: fp16 with ONNX Runtime needs its TensorRT '
                             f'provider (this one has {", ".join(names)}); use precision '
                             "'fp32' or 'auto'")
        index = int(device.partition(':')[2] or 0)
        self.providers = [self._provider(name, index) for name in names]
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.log_severity_level = 3          # errors only
        options.add_session_config_entry('session.intra_op.allow_spinning', '0')
        if threads is not None:
            options.intra_op_num_threads = threads
        self.threads = threads
        self._sessions = {
            graph: ort.InferenceSession(str(path), sess_options=options,
                                        providers=self.providers)
            for graph, path in ((TEMPLATE, exported.template), (SEARCH, exported.search))}

    def _provider(self, name: str, index: int) -> Provider:
        if name == CPU_PROVIDER:
            return name, {}
        options: Dict[str, object] = {'device_id': index}
        if name == GPU_PROVIDERS[0]:
            options.update(trt_fp16_enable=self.precision == 'fp16',
                           trt_engine_cache_enable=True,
                           trt_engine_cache_path=str(self.model.search.parent / 'tensorrt'))
        return name, options

    def _infer(self, graph: str, inputs: Dict[str, np.ndarray]) -> Dict[str, np.ndarray]:
        session = self._sessions[graph]
        names = [output.name for output in session.get_outputs()]
        values = session.run(names, inputs)
        return {name: np.asarray(value, dtype=np.float32) for name, value in zip(names, values)}

    def describe(self) -> str:
        """One line for the start-up log: runtime, precision, providers, threads, the file."""
        used = self._sessions[SEARCH].get_providers()
        threads = 'default threads' if self.threads is None else f'{self.threads} threads'
        return (f'onnxruntime {ort.__version__} ({", ".join(used)}, {threads}), '
                f'{self.precision}, {self.model.search}')
