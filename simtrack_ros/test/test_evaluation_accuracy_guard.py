"""The accuracy guard: exact exports pass, broken or drifting candidates are rejected by how much.

The trackers run the package's demo weights (small config, trained on synthetic sea scenes;
copied to a temporary folder, where the export cache goes) over generated held-out sequences.
"""
from __future__ import annotations

import copy
import json
import os
from pathlib import Path
import re
import shutil
import stat
from typing import List

import numpy as np
import onnx
from onnx import numpy_helper
import pytest
import torch

from simtrack_ros.data.sequences import list_sequences, read_sequence
from simtrack_ros.data.synthetic_dataset import generate_dataset, SynthOptions
from simtrack_ros.evaluation.accuracy_guard import (
    AUC_TOLERANCE, box_errors, GuardFileError, GuardResult, read_guard, run_guard, write_guard)
from simtrack_ros.evaluation.guard_cli import main
from simtrack_ros.evaluation.runner import run_simtrack
from simtrack_ros.export.onnx_export import ExportedModel, load_exported, template_path
from simtrack_ros.model import build_model
from simtrack_ros.model.checkpoint import load_checkpoint, save_checkpoint
from simtrack_ros.tracking.engine import EngineOptions
from simtrack_ros.tracking.tracker import Tracker, TrackerOptions

DEMO_WEIGHTS = Path(__file__).resolve().parents[1] / 'weights' / 'demo_small.pth'
FRAMES = 20
#: Corner-head layers whose weights the broken model has negated (its score maps flip).
BROKEN_LAYERS = ('box_head.conv5_tl', 'box_head.conv5_br')


def tracker(model, runtime: str = 'torch', precision: str = 'fp32', checkpoint=None) -> Tracker:
    engine = EngineOptions(device='cpu', runtime=runtime, precision=precision)
    return Tracker(model, TrackerOptions(engine=engine), checkpoint=checkpoint)


@pytest.fixture(scope='module')
def data(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp('guard') / 'held_out'
    generate_dataset(root, {'test': 2}, SynthOptions(width=640, height=360, frames=FRAMES),
                     seed=5, workers=1, progress=False)
    return root


@pytest.fixture(scope='module')
def sequences(data) -> List[Path]:
    return list_sequences(data, 'test')


@pytest.fixture(scope='module')
def checkpoint(tmp_path_factory) -> Path:
    """Copy the demo weights to a temporary folder (the export cache is written beside them)."""
    return Path(shutil.copy(DEMO_WEIGHTS, tmp_path_factory.mktemp('weights') / 'demo.pth'))


@pytest.fixture(scope='module')
def model(checkpoint):
    return load_checkpoint(checkpoint)[0]


@pytest.fixture(scope='module')
def reference(model) -> Tracker:
    return tracker(model)


@pytest.fixture(scope='module')
def broken_int8(model, checkpoint, tmp_path_factory) -> ExportedModel:
    """Write a dynamic-int8 export whose final corner-head convolutions are negated."""
    int8 = tracker(model, 'onnxruntime', 'int8', checkpoint).model
    proto = onnx.load(str(int8.search))
    negated = []
    for initializer in proto.graph.initializer:
        if any(layer in initializer.name for layer in BROKEN_LAYERS):
            values = numpy_helper.to_array(initializer)
            initializer.CopyFrom(numpy_helper.from_array(-values, initializer.name))
            negated.append(initializer.name)
    assert len(negated) == 4, negated     # weight and bias of both layers
    path = tmp_path_factory.mktemp('broken') / 'model.int8-dynamic.onnx'
    onnx.save(proto, str(path))
    shutil.copy(int8.template, template_path(path))
    return load_exported(path)


def a_result(**changes) -> GuardResult:
    values = {'candidate': '/x/model.int8-static.onnx', 'reference': 'small torch fp32',
              'precision': 'int8', 'runtime': 'openvino', 'auc_reference': 0.55,
              'auc_candidate': 0.54, 'auc_drop': 0.01, 'max_box_error_px': 3.5,
              'mean_box_error_px': 1.25, 'sequences': ['a', 'b'], 'frames': 40, 'passed': True,
              'reasons': [], 'clip_frames': 20, 'box_tolerance_px': None}
    values.update(changes)
    return GuardResult(**values)


def test_a_result_round_trips_through_its_file(tmp_path):
    result = a_result(passed=False, reasons=['Success AUC dropped 2.0 points.'],
                      max_box_error_px=float('inf'))
    path = write_guard(result, tmp_path / 'model.guard.json')
    assert read_guard(path) == result
    assert [p.name for p in tmp_path.iterdir()] == ['model.guard.json']    # no temporary left
    assert read_guard(tmp_path / 'missing.guard.json') is None
    umask = os.umask(0o022)
    try:
        # Readable by the node's user, whoever wrote it (the umask decides, as for any file).
        assert stat.S_IMODE(write_guard(result, path).stat().st_mode) == 0o644
    finally:
        os.umask(umask)


@pytest.mark.parametrize('text, message', [
    ('{"candidate": ', 'bad JSON'),
    ('[1, 2]', 'expected an object'),
    (json.dumps({'format_version': 99}), 'format_version 99'),
    (json.dumps({'format_version': 1, 'candidate': 'x'}), "missing ['auc_candidate'"),
    (a_result().to_json().replace('"frames": 40', '"frames": "forty"'),
     "wrong type of ['frames']"),
])
def test_a_bad_guard_file_is_refused_naming_it(tmp_path, text, message):
    path = tmp_path / 'model.guard.json'
    path.write_text(text)
    with pytest.raises(GuardFileError, match=re.escape(message)) as caught:
        read_guard(path)
    assert str(path) in str(caught.value)


def test_box_error_is_the_largest_edge_difference():
    reference = np.array([[10.0, 10.0, 20.0, 20.0], [0.0, 0.0, 5.0, 5.0]])
    boxes = np.array([[10.5, 9.0, 20.0, 22.0], [0.0, 0.0, np.nan, 5.0]])
    # Frame 0: x1 +0.5, y1 -1, x2 +0.5, y2 +1 -> 1.0; frame 1: not finite -> inf.
    assert box_errors(boxes, reference).tolist() == [1.0, float('inf')]
    with pytest.raises(ValueError, match='differ in shape'):
        box_errors(boxes[:1], reference)


def test_fp32_exports_pass_against_pytorch(model, checkpoint, reference, sequences):
    for runtime in ('onnxruntime', 'openvino'):
        candidate = tracker(model, runtime, 'fp32', checkpoint)
        result = run_guard(reference, candidate, sequences)
        assert result.passed and result.reasons == [], result.summary()
        assert (result.runtime, result.precision) == (runtime, 'fp32')
        assert result.candidate == str(candidate.model.search)
        assert result.max_box_error_px < 1e-2 and abs(result.auc_drop) < 1e-3
        assert result.auc_reference > 0.3          # the demo model tracks these sequences
        assert result.sequences == [path.name for path in sequences]
        assert result.clip_frames == FRAMES and result.box_tolerance_px == 1.0
        assert result.summary().startswith(f'accuracy guard passed for {runtime} fp32')


def test_broken_int8_model_is_rejected_with_the_miss(reference, broken_int8, sequences):
    candidate = tracker(broken_int8, 'onnxruntime', 'int8')
    result = run_guard(reference, candidate, sequences)
    assert not result.passed
    assert result.precision == 'int8' and result.box_tolerance_px is None   # AUC alone
    assert result.auc_drop > 10 * AUC_TOLERANCE, result.summary()
    drop = result.auc_drop * 100
    assert result.reasons == [
        f'Success AUC dropped {drop:.1f} points ({result.auc_candidate:.3f} vs '
        f'{result.auc_reference:.3f} fp32), {drop - 1:.1f} points over the 1-point limit.']
    assert 'accuracy guard MISSED for onnxruntime int8' in result.summary()
    assert result.reasons[0] in result.summary()


def test_boxes_off_the_clip_are_rejected_even_when_the_auc_holds(model, reference, sequences):
    """A candidate judged on boxes (fp32 here) that leaves fp32's track misses the box limit."""
    shifted = copy.deepcopy(model)
    with torch.no_grad():
        for name in BROKEN_LAYERS:
            shifted.get_submodule(name).weight.neg_()
    result = run_guard(reference, tracker(shifted), sequences, clip_frames=8,
                       candidate_name='shifted')
    assert not result.passed and result.clip_frames == 8
    assert result.max_box_error_px > 1.0
    assert any(reason.startswith(f"Boxes on the clip '{sequences[0].name}' differ from fp32 "
                                 f'by up to {result.max_box_error_px:.2f} px')
               and reason.endswith(f'{result.max_box_error_px - 1:.2f} px over the 1 px '
                                   'limit.') for reason in result.reasons), result.reasons


def test_bf16_is_judged_on_the_same_input_each_frame(model, reference, sequences):
    """bf16 boxes drift apart in one pass, but from the same crop they stay within 1 px."""
    bf16 = tracker(model, precision='bf16')
    one_pass = [run_simtrack(t, read_sequence(sequences[0])).boxes for t in (reference, bf16)]
    result = run_guard(reference, bf16, sequences[:1], candidate_name='bf16')
    assert result.box_tolerance_px == 1.0 and result.clip_frames == FRAMES
    assert result.max_box_error_px < 1.0, result.reasons
    assert result.max_box_error_px < box_errors(*one_pass).max()


def test_the_reference_must_be_pytorch_fp32_of_the_same_model(model, reference, sequences):
    with pytest.raises(ValueError, match='reference must be the PyTorch fp32'):
        run_guard(tracker(model, precision='bf16'), reference, sequences)
    with pytest.raises(ValueError, match='not the reference model: template_size'):
        run_guard(reference, tracker(build_model('tiny')), sequences)
    with pytest.raises(ValueError, match='at least one sequence'):
        run_guard(reference, reference, [])
    with pytest.raises(ValueError, match='clip_frames must be >= 1'):
        run_guard(reference, reference, sequences, clip_frames=0)


def test_cli_writes_the_result_beside_the_cached_export(checkpoint, data, capsys):
    code = main([str(checkpoint), '--data', str(data), '--runtime', 'openvino', '--precision',
                 'fp32', '--sequences', '1', '--clip-frames', '10'])
    out = capsys.readouterr().out
    assert code == 0, out
    stored = read_guard(load_exported(next(checkpoint.parent.glob(
        'demo.export/*/model.fp32.onnx'))).guard_file('fp32'))
    assert stored.passed and stored.runtime == 'openvino' and stored.clip_frames == 10
    assert 'PASSED' in out and f'wrote {stored.candidate[:-5]}.guard.json' in out


def test_cli_exit_1_and_the_miss_for_the_broken_file(checkpoint, data, broken_int8, capsys):
    code = main([str(checkpoint), '--data', str(data), '--exported', str(broken_int8.search),
                 '--runtime', 'onnxruntime', '--precision', 'int8', '--json'])
    out = capsys.readouterr().out
    assert code == 1
    printed = GuardResult.from_json(out, 'stdout')
    assert printed == read_guard(broken_int8.guard_file('int8'))
    assert not printed.passed and 'Success AUC dropped' in printed.reasons[0]


def test_cli_bad_input_exits_2_with_the_reason(checkpoint, data, broken_int8, tmp_path, capsys):
    other = save_checkpoint(build_model('small'), tmp_path / 'other.pth')
    cases = [
        (['--data', str(tmp_path / 'nowhere')], 'no such dataset folder'),
        (['--data', str(data), '--sequences', '0'], '--sequences must be >= 1'),
        (['--data', str(data), '--runtime', 'torch', '--precision', 'int8'], 'int8'),
        (['--data', str(data), '--exported', str(tmp_path / 'none.onnx')], 'none.onnx'),
    ]
    for arguments, message in cases:
        assert main([str(checkpoint), *arguments]) == 2, arguments
        error = capsys.readouterr().err
        assert error.startswith('simtrack-guard: ') and message in error, error
    assert main([str(other), '--data', str(data), '--exported', str(broken_int8.search),
                 '--runtime', 'onnxruntime']) == 2
    assert 'exported from another checkpoint' in capsys.readouterr().err
    assert main([str(tmp_path / 'missing.pth'), '--data', str(data)]) == 2
    assert 'missing.pth' in capsys.readouterr().err
    with pytest.raises(SystemExit) as caught:
        main(['--help'])
    assert caught.value.code == 0 and '--exported' in capsys.readouterr().out
