"""int8: calibration crops, ONNX Runtime dynamic and NNCF static quantisation that load and run."""
from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import List

import numpy as np
import onnx
import openvino
import pytest
from test_export_onnx import small_checkpoint

from simtrack_ros.data.sequences import write_sequence
from simtrack_ros.export.calibration import calibration_inputs, synthetic_calibration_sequences
from simtrack_ros.export.metadata import read_metadata
from simtrack_ros.export.onnx_export import (
    example_inputs, export_onnx, ExportedModel, load_exported, run_onnx, SEARCH_INPUTS)
from simtrack_ros.export.quantize import quantize_dynamic, quantize_static, recipe

#: Largest box change (crop-normalised) int8 may make on the test's random inputs.
BOX_ATOL = 0.02


@pytest.fixture(scope='module')
def small(tmp_path_factory):
    folder = tmp_path_factory.mktemp('quantize')
    model, _ = small_checkpoint(folder)
    return model, export_onnx(model, folder / 'small.onnx')


@pytest.fixture(scope='module')
def sequences(tmp_path_factory) -> List[Path]:
    return synthetic_calibration_sequences(tmp_path_factory.mktemp('data') / 'calibration',
                                           count=2, frames=6)


def op_types(path: Path) -> Counter:
    return Counter(node.op_type for node in onnx.load(str(path)).graph.node)


def assert_runs_close_to(fp32: ExportedModel, quantized: ExportedModel) -> None:
    """Two targets through both search graphs (ONNX Runtime): same shapes, boxes close."""
    inputs = {k: v.numpy() for k, v in example_inputs(fp32.config, 'search', 2).items()}
    reference = run_onnx(fp32.search, inputs)
    outputs = run_onnx(quantized.search, inputs)
    assert [o.shape for o in outputs] == [r.shape for r in reference]
    assert all(np.isfinite(o).all() for o in outputs)
    np.testing.assert_allclose(outputs[0], reference[0], atol=BOX_ATOL)


def test_calibration_inputs_are_tracker_crops_with_template_tokens(small, sequences):
    model, exported = small
    from_torch = calibration_inputs(model, sequences, samples=5, seed=3)
    from_onnx = calibration_inputs(exported, sequences, samples=5, seed=3)
    assert len(from_torch) == 5
    for a, b in zip(from_torch, from_onnx):
        assert sorted(a) == sorted(SEARCH_INPUTS)
        assert a['template_tokens'].shape == (1, 20, 192)
        assert a['search'].shape == (1, 3, 128, 128) and a['search'].dtype == np.float32
        np.testing.assert_array_equal(a['search'], b['search'])
        np.testing.assert_allclose(a['template_tokens'], b['template_tokens'], atol=1e-5)
    # One template per sequence (round-robin), search crops differ with the frame and jitter.
    np.testing.assert_array_equal(from_torch[0]['template_tokens'],
                                  from_torch[2]['template_tokens'])
    assert not np.array_equal(from_torch[0]['template_tokens'],
                              from_torch[1]['template_tokens'])
    other = calibration_inputs(model, sequences, samples=5, seed=4)
    assert not np.array_equal(other[0]['search'], from_torch[0]['search'])


def test_calibration_refuses_unusable_input(small, sequences, tmp_path):
    model, _ = small
    with pytest.raises(ValueError, match='at least one sequence'):
        calibration_inputs(model, [])
    with pytest.raises(ValueError, match='samples must be >= 1'):
        calibration_inputs(model, sequences, samples=0)
    hidden = write_sequence(tmp_path / 'hidden', [np.zeros((64, 64, 3), np.uint8)] * 2,
                            [[0, 0, 0, 0]] * 2, absent=[1, 1])
    with pytest.raises(ValueError, match='hidden: no frame with a visible target'):
        calibration_inputs(model, [hidden.path])
    with pytest.raises(ValueError, match='not empty'):
        synthetic_calibration_sequences(tmp_path, count=1, frames=2)


def test_quantize_dynamic_quantises_matmuls_only_and_loads(small, tmp_path):
    _, fp32 = small
    quantized = quantize_dynamic(fp32, tmp_path / 'int8' / 'small.int8.onnx')
    assert load_exported(quantized.search) == quantized
    assert quantized.precision == 'int8-dynamic' and fp32.precision == 'fp32'
    assert read_metadata(fp32.search).precision == 'fp32'
    assert quantized.metadata.quantization == recipe('int8-dynamic')
    assert quantized.metadata.replace(precision='fp32', quantization=None) == fp32.metadata
    ops = op_types(quantized.search)
    assert ops['MatMulInteger'] >= 4 * 4  # at least q/k/v-in, out, two MLP layers per block
    assert ops['ConvInteger'] == 0 and ops['Conv'] == op_types(fp32.search)['Conv']
    assert quantized.template.read_bytes() == fp32.template.read_bytes()
    assert quantized.search.stat().st_size < fp32.search.stat().st_size / 2
    assert_runs_close_to(fp32, quantized)
    with pytest.raises(ValueError, match='must not overwrite its source'):
        quantize_dynamic(fp32, fp32.search)


def test_quantize_static_gives_qdq_onnx_that_openvino_runs_in_int8(small, sequences, tmp_path,
                                                                   capfd):
    _, fp32 = small
    calibration = calibration_inputs(fp32, sequences, samples=8)
    capfd.readouterr()
    quantized = quantize_static(fp32, tmp_path / 'small.int8-static.onnx', calibration)
    assert capfd.readouterr().out == '', "NNCF's progress belongs on stderr"
    assert load_exported(quantized.search).precision == 'int8-static'
    assert quantized.metadata.quantization == recipe('int8-static', 'given inputs')
    ops = op_types(quantized.search)
    assert ops['QuantizeLinear'] > 0 and ops['DequantizeLinear'] > 0
    assert ops['Conv'] == op_types(fp32.search)['Conv']          # convolutions stay fp32
    proto = onnx.load(str(quantized.search))
    conv_inputs = {name for node in proto.graph.node if node.op_type == 'Conv'
                   for name in node.input}
    dequantized = {output for node in proto.graph.node if node.op_type == 'DequantizeLinear'
                   for output in node.output}
    assert not conv_inputs & dequantized
    assert_runs_close_to(fp32, quantized)
    core = openvino.Core()
    compiled = core.compile_model(str(quantized.search), 'CPU',
                                  {'INFERENCE_PRECISION_HINT': 'f32'})
    inputs = {k: v.numpy() for k, v in example_inputs(fp32.config, 'search', 2).items()}
    boxes = compiled(inputs)['pred_boxes']
    np.testing.assert_allclose(boxes, run_onnx(fp32.search, inputs)[0], atol=BOX_ATOL)
    if 'INT8' not in core.get_property('CPU', 'OPTIMIZATION_CAPABILITIES'):
        pytest.skip('this CPU has no int8 capability in OpenVINO: int8 kernels not checked')
    precisions = Counter(
        str(op.get_rt_info()['runtimePrecision'].astype(str))
        for op in compiled.get_runtime_model().get_ops()
        if op.get_rt_info()['layerType'].astype(str) == 'FullyConnected')
    assert precisions['i8'] + precisions['u8'] >= 4 * 4, precisions


def test_quantize_static_refuses_bad_calibration(small, tmp_path):
    _, fp32 = small
    with pytest.raises(ValueError, match='needs calibration inputs, got none'):
        quantize_static(fp32, tmp_path / 'x.onnx', [])
    with pytest.raises(ValueError, match="sample 0 has inputs \\['search'\\]"):
        quantize_static(fp32, tmp_path / 'x.onnx', [{'search': np.zeros((1, 3, 128, 128))}])
