"""OpenVINO engine: runs an exported model on the CPU, the fastest exact fp32 CPU stack.

Each graph is compiled once for the ``CPU`` device, with its dynamic ``targets`` dimension,
so any number of targets runs without recompiling. The inference precision is always set
explicitly: OpenVINO's own default on a CPU with native bf16 is bf16, which would change the
numerics of an fp32 request. fp32 runs with ``INFERENCE_PRECISION_HINT`` f32, bf16 with bf16
(the same fp32 file), int8 the ``int8-static`` (NNCF) file with its non-quantised layers in
f32.
"""
from __future__ import annotations

from typing import Dict, Optional, TYPE_CHECKING

import numpy as np
import openvino as ov

from simtrack_ros.tracking.exported_engine import ExportedEngine, SEARCH, TEMPLATE
from simtrack_ros.tracking.precision_policy import PrecisionChoice

if TYPE_CHECKING:
    from simtrack_ros.export.onnx_export import ExportedModel

DEVICE = 'CPU'
#: ``INFERENCE_PRECISION_HINT`` per engine precision.
PRECISION_HINTS = {'fp32': 'f32', 'bf16': 'bf16', 'int8': 'f32'}


class OpenVinoEngine(ExportedEngine):
    """Runs an :class:`~simtrack_ros.export.onnx_export.ExportedModel` with OpenVINO (CPU).

    ``threads``: ``INFERENCE_NUM_THREADS`` (None: OpenVINO's default, all cores).
    """

    runtime = 'openvino'

    def __init__(self, exported: 'ExportedModel', precision: PrecisionChoice,
                 threads: Optional[int] = None) -> None:
        super().__init__(exported, precision)
        if self.precision not in PRECISION_HINTS:
            raise ValueError(f'{exported.search}: OpenVINO runs fp32, bf16 or int8 on the CPU, '
                             f'not {self.precision}')
        self.config: Dict[str, object] = {
            'INFERENCE_PRECISION_HINT': PRECISION_HINTS[self.precision],
            'PERFORMANCE_HINT': 'LATENCY'}
        if threads is not None:
            self.config['INFERENCE_NUM_THREADS'] = threads
        core = ov.Core()
        self._compiled = {graph: core.compile_model(str(path), DEVICE, self.config)
                          for graph, path in ((TEMPLATE, exported.template),
                                              (SEARCH, exported.search))}
        self._requests = {graph: compiled.create_infer_request()
                          for graph, compiled in self._compiled.items()}
        self._cpu_name = core.get_property(DEVICE, 'FULL_DEVICE_NAME')

    def _infer(self, graph: str, inputs: Dict[str, np.ndarray]) -> Dict[str, np.ndarray]:
        results = self._requests[graph].infer(inputs)
        # The result arrays are views of the request's buffers: copy them out.
        return {port.get_any_name(): np.array(value, dtype=np.float32)
                for port, value in results.items()}

    def describe(self) -> str:
        """One line for the start-up log: runtime, precision, device, threads, the file."""
        threads = self.config.get('INFERENCE_NUM_THREADS', 'default')
        return (f'openvino {ov.__version__.split("-")[0]} ({DEVICE} {self._cpu_name}, '
                f'INFERENCE_PRECISION_HINT {self.config["INFERENCE_PRECISION_HINT"]}, '
                f'{threads} threads), {self.precision}, {self.model.search}')
