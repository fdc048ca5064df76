"""The node with the runtime parameter: OpenVINO in a real node process, .onnx weights, errors."""
from __future__ import annotations

import dataclasses
import os
from pathlib import Path
import shutil
import time
from typing import Tuple

from node_helpers import (frame, image, IMAGE_QOS, set_target_request, start_node_process,
                          stop_node_process, TrackerUnderTest)
import pytest
from rclpy.parameter import Parameter
from sensor_msgs.msg import Image
from simtrack_ros_interfaces.msg import TrackerStatus
from simtrack_ros_interfaces.srv import SetTarget
from vision_msgs.msg import Detection2D

from simtrack_ros.evaluation.accuracy_guard import GuardResult, write_guard
from simtrack_ros.export.cache import cached_export
from simtrack_ros.export.onnx_export import ExportedModel
from simtrack_ros.ros import parameters
from simtrack_ros.ros.tracker_node import accuracy_guard_report

DEMO_WEIGHTS = Path(__file__).resolve().parents[1] / 'weights' / 'demo_small.pth'
#: A node process starts, loads the model and compiles both graphs within this (loaded host).
START_S = 120.0


@pytest.fixture(scope='module')
def cached(tmp_path_factory) -> Tuple[Path, ExportedModel]:
    """Copy the demo checkpoint and export it into its cache (as the node would)."""
    checkpoint = Path(shutil.copy(DEMO_WEIGHTS, tmp_path_factory.mktemp('node') / 'demo.pth'))
    return checkpoint, cached_export(checkpoint, 'fp32')


def _passed_guard(exported: ExportedModel, precision: str = 'fp32') -> GuardResult:
    return GuardResult(
        candidate=str(exported.search), reference='small torch fp32', precision=precision,
        runtime='openvino', auc_reference=0.612, auc_candidate=0.612, auc_drop=0.0,
        max_box_error_px=2e-4, mean_box_error_px=1e-4, sequences=['sea_000'], frames=40,
        passed=True, reasons=[], clip_frames=40)


def test_bf16_and_fp32_verdicts_of_one_file_are_kept_apart(cached, tmp_path):
    exported = dataclasses.replace(cached[1], search=tmp_path / 'model.fp32.onnx')
    assert accuracy_guard_report(exported, 'bf16')[0] is False          # unchecked
    write_guard(_passed_guard(exported, 'bf16'), exported.guard_file('bf16'))
    missed = dataclasses.replace(_passed_guard(exported), passed=False, reasons=['worse'])
    write_guard(missed, exported.guard_file('fp32'))                      # does not replace it
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        'model.fp32.bf16.guard.json', 'model.fp32.guard.json']
    passed, line = accuracy_guard_report(exported, 'bf16')
    assert passed and str(exported.guard_file('bf16')) in line, line
    assert accuracy_guard_report(exported, 'fp32')[0] is False


def _published_until(ros, publisher, received, msg, timeout: float) -> bool:
    """Publish ``msg`` once a second until a received message carries its stamp."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        publisher.publish(msg)
        if ros.wait_for(lambda: any(m.header.stamp == msg.header.stamp for m in received),
                        1.0):
            return True
    return False


def test_node_process_tracks_with_runtime_openvino(ros, cached, tmp_path):
    checkpoint, exported = cached
    write_guard(_passed_guard(exported), exported.guard_file('fp32'))
    stamp = exported.search.stat().st_mtime_ns
    namespace = f'/runtime{os.getpid()}'
    log = tmp_path / 'node.log'
    with log.open('w') as output:
        process = start_node_process(namespace, output, weights=str(checkpoint),
                                     runtime='openvino', device='cpu')
    try:
        camera = ros.publisher(Image, f'{namespace}/image', IMAGE_QOS)
        statuses = ros.subscribe(TrackerStatus, f'{namespace}/simtrack/status')
        detections = ros.subscribe(Detection2D, f'{namespace}/simtrack/detection')
        assert _published_until(ros, camera, statuses, image(frame(), 1.0), START_S), \
            'the node never answered a frame'
        reply = ros.call(SetTarget, f'{namespace}/simtrack/set_target',
                         set_target_request(160, 120, 40, 30, stamp_s=1.0))
        assert reply.success, reply.message
        assert _published_until(ros, camera, detections, image(frame(seed=1), 2.0), 30.0)
        detection = next(d for d in detections if d.header.stamp.sec == 2)
        assert detection.id == reply.target_id and detection.bbox.size_x > 0
        status = next(s for s in statuses if s.header.stamp.sec == 2)
        assert status.device == 'cpu'
    finally:
        stop_node_process(process)
    text = log.read_text()
    assert 'runtime openvino' in text and 'INFERENCE_PRECISION_HINT f32' in text, text
    assert 'precision fp32: auto: fp32, the model is 192 wide' in text, text
    assert f'accuracy guard passed for openvino fp32 ({exported.search})' in text, text
    assert exported.search.stat().st_mtime_ns == stamp, 'the node exported again'


def test_onnx_weights_run_with_runtime_auto(ros, cached):
    exported = cached[1]
    node = TrackerUnderTest(ros, weights=str(exported.search), device='cpu')
    tracker = node.node._tracker
    assert tracker is not None, node.node._load_error
    assert tracker.engine.runtime == 'openvino' and tracker.engine.precision == 'fp32'
    assert tracker.model.search == exported.search and tracker.has_probabilities
    target_id = node.start_tracking()
    status = node.publish_and_wait(image(frame(seed=2), 2.0))
    assert [t.target_id for t in status.targets] == [target_id]
    assert 'exported to' in status.model and str(exported.search) in status.model
    assert node.diagnostics()['precision'] == 'fp32'


def test_unusable_onnx_weights_keep_the_node_up(ros, cached, tmp_path):
    exported = cached[1]
    truncated = tmp_path / 'model.onnx'
    truncated.write_bytes(exported.search.read_bytes()[:5000])
    shutil.copy(exported.template, tmp_path / 'model.template.onnx')
    for params, message in (
            ({'weights': str(truncated)}, str(truncated)),
            ({'weights': str(exported.search), 'model_config': 'tiny'},
             "holds a 'small' model, but model_config is 'tiny'"),
            ({'weights': str(exported.search), 'runtime': 'torch'},
             "runtime 'torch' needs the PyTorch checkpoint"),
            ({'runtime': 'torch', 'precision': 'int8'}, "needs runtime 'onnxruntime'")):
        node = TrackerUnderTest(ros, **params).node
        assert node._lifecycle == 'unconfigured', params
        assert message in node._load_error, node._load_error


def test_runtime_parameter_is_read_only_with_choices(ros):
    values = {spec.name: spec.default for spec in parameters.SPECS}
    assert values['runtime'] == 'auto' and values['precision'] == 'auto'
    assert 'runtime must be one of auto, torch, onnxruntime, openvino' in parameters.check(
        {**values, 'runtime': 'tensorrt'})[0]
    assert parameters.tracker_options({**values, 'runtime': 'openvino'}).engine.runtime == \
        'openvino'
    node = TrackerUnderTest(ros).node
    assert node._tracker.engine.runtime == 'torch'       # .pth weights with runtime auto
    result = node.set_parameters([Parameter('runtime', value='openvino')])[0]
    assert not result.successful and 'read-only' in result.reason.lower()
