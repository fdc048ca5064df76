"""int8 post-training quantisation of an exported search graph (the template graph stays fp32).

* :func:`quantize_dynamic` — ONNX Runtime dynamic quantisation of the MatMul layers only
  (weights int8 per tensor, activations quantised on the fly); the convolutions of the patch
  embedding and the corner head stay fp32, which measured both faster and more accurate than
  quantising every op type. Needs no calibration data. Precision ``'int8-dynamic'``.
* :func:`quantize_static` — NNCF post-training quantisation (ONNX backend, transformer
  preset: SmoothQuant and bias correction) calibrated on real search-graph inputs
  (:mod:`.calibration`). The convolutions (patch embedding, corner head: under 2 % of the
  compute) stay fp32 here too: on the demo model's held-out sequences quantising them cost
  1.3 points of success AUC (the accuracy guard's limit is 1), keeping them cost none. The
  result stays ONNX with QuantizeLinear/DequantizeLinear pairs, which OpenVINO compiles to
  int8 kernels. Precision ``'int8-static'``.

Both write the search graph atomically with the source's metadata (precision changed, and
``quantization``: :func:`recipe` of the precision and its calibration data) and copy the
template graph beside it. The export cache re-quantises a cached file whose recipe differs.
"""
from __future__ import annotations

import contextlib
import logging
import os
from pathlib import Path
import shutil
import sys
from typing import Dict, Iterator, Optional, Sequence

import numpy as np
import onnx

from simtrack_ros.export.metadata import (
    load_onnx, PathLike, save_onnx, set_metadata, temporary_sibling)
from simtrack_ros.export.onnx_export import (
    ExportedModel, load_exported, search_file, SEARCH_INPUTS, template_path)


#: What each int8 precision does; change the text whenever the recipe changes, so that files
#: made by the old one are not reused.
RECIPES = {'int8-dynamic': 'onnxruntime quantize_dynamic: MatMul only, QInt8 weights',
           'int8-static': 'nncf quantize: transformer preset, Conv ignored'}


def recipe(precision: str, calibration: Optional[str] = None) -> str:
    """Return the ``quantization`` metadata of an int8 precision (and its calibration data)."""
    text = RECIPES[precision]
    return text if calibration is None else f'{text}; calibrated on {calibration}'


def _not_preprocessing_advice(record: logging.LogRecord) -> bool:
    """Log filter: drop ONNX Runtime's root-logger advice to run its pre-processing first."""
    return 'pre-processing' not in record.getMessage()


@contextlib.contextmanager
def _nncf_output_on_stderr() -> Iterator[None]:
    """Move NNCF's progress bars and log lines from stdout (a caller's results) to stderr.

    Process-wide while it lasts (``sys.stdout``, the nncf logger's handlers): for the CLIs and
    a node's one-off export, not for concurrent threads that print.
    """
    moved = {handler: handler.stream for handler in logging.getLogger('nncf').handlers
             if type(handler) is logging.StreamHandler and handler.stream is not sys.stderr}
    for handler in moved:
        handler.setStream(sys.stderr)
    try:
        with contextlib.redirect_stdout(sys.stderr):
            yield
    finally:
        for handler, stream in moved.items():
            handler.setStream(stream)


def _finish(exported: ExportedModel, proto: onnx.ModelProto, search_path: PathLike,
            precision: str, quantization: str) -> ExportedModel:
    """Write the quantised search graph and a copy of the template graph; load the pair."""
    search = search_file(search_path)
    if search.resolve() == exported.search.resolve():
        raise ValueError(f'{search}: the quantised model must not overwrite its source')
    set_metadata(proto, exported.metadata.replace(precision=precision,
                                                  quantization=quantization))
    template = template_path(search)
    temp = temporary_sibling(template)
    template.parent.mkdir(parents=True, exist_ok=True)
    try:
        shutil.copyfile(exported.template, temp)
        os.replace(temp, template)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    save_onnx(proto, search)
    return load_exported(search)


def quantize_dynamic(exported: ExportedModel, search_path: PathLike) -> ExportedModel:
    """Quantise ``exported``'s search graph with ONNX Runtime (dynamic, MatMul only) to a file.

    Writes ``search_path`` (precision ``'int8-dynamic'``) and its template graph (a copy).
    """
    # Imported here, like nncf below: the quantisation toolkits are slow to import.
    from onnxruntime.quantization import QuantType
    from onnxruntime.quantization import quantize_dynamic as ort_quantize_dynamic

    search = search_file(search_path)
    search.parent.mkdir(parents=True, exist_ok=True)
    temp = temporary_sibling(search)
    logging.getLogger().addFilter(_not_preprocessing_advice)
    try:
        ort_quantize_dynamic(exported.search, temp, op_types_to_quantize=['MatMul'],
                             weight_type=QuantType.QInt8,
                             extra_options={'MatMulConstBOnly': True})
        proto = load_onnx(temp)
    finally:
        logging.getLogger().removeFilter(_not_preprocessing_advice)
        temp.unlink(missing_ok=True)
    return _finish(exported, proto, search, 'int8-dynamic', recipe('int8-dynamic'))


def _check_calibration(calibration: Sequence[Dict[str, np.ndarray]], source: Path) -> None:
    if not calibration:
        raise ValueError(f'{source}: static quantisation needs calibration inputs, got none')
    for index, sample in enumerate(calibration):
        if sorted(sample) != sorted(SEARCH_INPUTS):
            raise ValueError(f'{source}: calibration sample {index} has inputs {sorted(sample)}, '
                             f'expected {sorted(SEARCH_INPUTS)}')


def quantize_static(exported: ExportedModel, search_path: PathLike,
                    calibration: Sequence[Dict[str, np.ndarray]],
                    calibration_source: str = 'given inputs') -> ExportedModel:
    """Quantise ``exported``'s search graph with NNCF, calibrated on ``calibration``.

    ``calibration``: search-graph inputs by name (:func:`.calibration.calibration_inputs`),
    all of them used; ``calibration_source`` says where they came from (for the metadata).
    Writes ``search_path`` (ONNX QDQ, precision ``'int8-static'``) and its template graph
    (a copy).
    """
    import nncf

    _check_calibration(calibration, exported.search)
    samples = [{name: np.ascontiguousarray(sample[name], np.float32) for name in SEARCH_INPUTS}
               for sample in calibration]
    with _nncf_output_on_stderr():
        quantized = nncf.quantize(
            load_onnx(exported.search), nncf.Dataset(samples), subset_size=len(samples),
            model_type=nncf.ModelType.TRANSFORMER,
            ignored_scope=nncf.IgnoredScope(types=['Conv']))
    return _finish(exported, quantized, search_path, 'int8-static',
                   recipe('int8-static', calibration_source))
