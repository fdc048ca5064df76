"""Parameters (validation, read-only, dynamic changes) and model loading failures."""
from __future__ import annotations

from pathlib import Path
import subprocess

from ament_index_python.packages import get_package_prefix
from diagnostic_msgs.msg import DiagnosticStatus
from node_helpers import frame, image, set_target_request, TrackerUnderTest
import numpy as np
import pytest
from rcl_interfaces.msg import Parameter as ParameterMsg, ParameterType, ParameterValue
from rcl_interfaces.srv import SetParameters
from rclpy.parameter import Parameter
import torch
import yaml

from simtrack_ros.challenges import CHALLENGE_NAMES, UNKNOWN_ID
from simtrack_ros.model import build_model, save_checkpoint
from simtrack_ros.ros import parameters
from simtrack_ros.ros.node_process import help_requested
from simtrack_ros.ros.tracker_node import TrackerNode


def _reason(node: TrackerNode, name: str, value) -> str:
    result = node.set_parameters([Parameter(name, value=value)])[0]
    assert not result.successful, f'{name}={value!r} was accepted'
    assert result.reason
    return result.reason


def test_bad_values_are_rejected_with_a_reason(ros):
    node = TrackerUnderTest(ros).node
    assert 'max_rate_hz' in _reason(node, 'max_rate_hz', -1.0)
    assert 'image_reliability must be one of auto, best_effort, reliable' in _reason(
        node, 'image_reliability', 'sometimes')
    assert 'lost_below <= uncertain_below' in _reason(node, 'lost_threshold', 0.9)
    assert 'search_factor' in _reason(node, 'search_factor', float('nan'))
    assert _reason(node, 'search_factor', 'big')       # wrong type: rclpy refuses
    for read_only, value in (('device', 'cpu'), ('weights', '/x.pth'), ('precision', 'bf16'),
                             ('model_config', 'tiny'), ('cuda_graphs', True)):
        assert 'read-only' in _reason(node, read_only, value).lower()
    assert node.get_parameter('max_rate_hz').value == 0.0


def test_rejection_through_the_parameter_service(ros):
    TrackerUnderTest(ros)
    request = SetParameters.Request(parameters=[ParameterMsg(
        name='frame_buffer_length',
        value=ParameterValue(type=ParameterType.PARAMETER_INTEGER, integer_value=0))])
    reply = ros.call(SetParameters, ros.topic('simtrack/set_parameters'), request)
    assert not reply.results[0].successful and reply.results[0].reason


def test_dynamic_changes_apply(ros):
    node = TrackerUnderTest(ros)
    node.start_tracking()
    tracker_node = node.node
    changes = [
        Parameter('frame_buffer_length', value=3), Parameter('search_factor', value=5.0),
        Parameter('uncertain_threshold', value=0.5), Parameter('recover_threshold', value=0.6),
        Parameter('max_template_age_s', value=0.5)]
    # One at a time, uncertain 0.5 > recover 0.4 is inconsistent; together it is fine.
    assert 'recover_above' in tracker_node.set_parameters(changes)[2].reason
    result = tracker_node.set_parameters_atomically(changes)
    assert result.successful, result.reason
    tracker = tracker_node._tracker
    assert tracker.search_factor == 5.0
    assert tracker.options.thresholds.uncertain_below == 0.5
    existing = next(iter(tracker._targets.values()))  # set before the change
    assert existing.machine.thresholds.recover_above == 0.6
    assert tracker_node._frames.length == 3
    assert tracker_node._frames.max_age_ns == 500_000_000
    for index in range(5):
        node.publish_and_wait(image(frame(), 2.0 + index))
    assert len(tracker_node._frames) == 3


def test_unit_validation():
    values = {spec.name: spec.default for spec in parameters.SPECS}
    assert parameters.check(values) == []
    assert parameters.check({**values, 'device': 'gpu'})[0].startswith('device:')
    assert 'fp16' in parameters.check({**values, 'device': 'cpu', 'precision': 'fp16'})[0]
    assert parameters.check({**values, 'model_config': 'huge'})
    descriptor = parameters.SPEC_BY_NAME['search_factor'].descriptor()
    assert descriptor.floating_point_range[0].from_value == 1.0
    assert parameters.SPEC_BY_NAME['weights'].descriptor().read_only


def test_bad_params_file_values_keep_the_node_up(ros):
    node = TrackerUnderTest(ros, search_factor=4, max_rate_hz=-3.0)  # int for a double; range
    tracker_node = node.node
    assert tracker_node._lifecycle == 'unconfigured'
    assert 'search_factor' in tracker_node._load_error
    assert 'max_rate_hz' in tracker_node._load_error
    reply = node.set_target(set_target_request(160, 120, 40, 30))
    assert not reply.success and 'model not loaded: invalid parameters' in reply.message
    # Fixed at run time, the node configures.
    assert all(r.successful for r in tracker_node.set_parameters([
        Parameter('search_factor', value=4.0), Parameter('max_rate_hz', value=0.0)]))
    tracker_node.trigger_configure()
    tracker_node.trigger_activate()
    assert tracker_node._lifecycle == 'active' and tracker_node._load_error == ''
    node.start_tracking()


def test_cuda_requested_without_cuda(ros, monkeypatch):
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: False)  # also on a GPU machine
    node = TrackerUnderTest(ros, device='cuda')
    assert node.node._lifecycle == 'unconfigured'
    assert 'CUDA is not available' in node.node._load_error
    reply = node.set_target(set_target_request(160, 120, 40, 30))
    assert not reply.success and 'CUDA is not available' in reply.message


def test_params_file_applies_to_a_namespaced_node(ros, tmp_path: Path):
    config = Path(__file__).resolve().parents[1] / 'config' / 'tracker.yaml'
    params_file = tmp_path / 'tracker.yaml'
    params_file.write_text(config.read_text().replace('max_targets: 8', 'max_targets: 3'))
    node = ros.add(TrackerNode(context=ros.context, namespace=ros.namespace,
                               cli_args=['--ros-args', '--params-file', str(params_file)]))
    assert node.get_parameter('max_targets').value == 3
    assert node._lifecycle == 'active'


@pytest.mark.parametrize('content', [None, b'not a checkpoint at all'])
def test_missing_or_corrupt_weights(ros, tmp_path: Path, content):
    weights = tmp_path / 'simtrack.pth'
    if content is not None:
        weights.write_bytes(content)
    node = TrackerUnderTest(ros, weights=str(weights))
    tracker_node = node.node
    assert tracker_node._lifecycle == 'unconfigured'
    assert str(weights) in tracker_node._load_error
    reply = node.set_target(set_target_request(160, 120, 40, 30))
    assert not reply.success and reply.message.startswith('model not loaded: ')
    assert str(weights) in reply.message
    stop = node.stop('')
    assert stop.success and 'no targets' in stop.message
    values = node.diagnostics()
    assert values['level'] == DiagnosticStatus.ERROR and str(weights) in values['load error']


def test_trained_head_publishes_probabilities(ros, tmp_path: Path):
    model = build_model('tiny')
    model.trained_heads = {'box', 'cls'}
    weights = save_checkpoint(model, tmp_path / 'trained.pth')
    node = TrackerUnderTest(ros, weights=str(weights))
    target_id = node.start_tracking()
    status, challenge = node.publish_and_classify(image(frame(), 3.0))
    assert status.classification_trained
    assert challenge.target_id == target_id and challenge.challenge != UNKNOWN_ID
    assert list(challenge.class_names) == list(CHALLENGE_NAMES)
    probabilities = np.array(challenge.probabilities)
    assert len(probabilities) == 10 and abs(probabilities.sum() - 1.0) < 1e-4
    assert challenge.challenge == int(np.argmax(probabilities))
    assert challenge.confidence == pytest.approx(probabilities.max())
    assert not challenge.multi_label


def test_untrained_box_head_is_flagged(ros, tmp_path: Path):
    model = build_model('tiny')  # e.g. CLIP-only weights: backbone loaded, box head random
    model.trained_heads = set()
    weights = save_checkpoint(model, tmp_path / 'backbone_only.pth')
    node = TrackerUnderTest(ros, weights=str(weights))
    assert node.node._lifecycle == 'active'
    values = node.diagnostics()
    assert values['level'] == DiagnosticStatus.WARN
    assert 'box head untrained' in values['message']


def test_config_file_lists_every_parameter_with_its_default():
    config = Path(__file__).resolve().parents[1] / 'config' / 'tracker.yaml'
    text = config.read_text()
    values = yaml.safe_load(text)['/**/simtrack']['ros__parameters']
    assert values == {spec.name: spec.default for spec in parameters.SPECS}
    lines = text.splitlines()
    for spec in parameters.SPECS:
        index = next(i for i, line in enumerate(lines) if line.strip().startswith(f'{spec.name}:'))
        assert lines[index - 1].strip().startswith('#'), f'{spec.name} has no comment'
        if spec.low is not None:
            documented = f'[{spec.low:g}, {spec.high:g}]'
            assert lines[index - 1].rstrip().endswith(documented), (spec.name, documented)


@pytest.mark.parametrize('value, expected', [('auto', False), (True, True), (False, False)])
def test_crop_on_device_parameter(ros, value, expected):
    """The values auto, true and false choose the crop path (auto: OpenCV on the CPU)."""
    node = TrackerUnderTest(ros, device='cpu', crop_on_device=value)
    assert node.node._tracker.engine.crop_on_device is expected
    node.start_tracking()


def test_crop_on_device_rejects_other_values(ros):
    node = TrackerUnderTest(ros, crop_on_device='yes')
    assert node.node._tracker is None
    assert 'crop_on_device must be one of auto' in node.node._load_error


@pytest.mark.parametrize('program', ['tracker_node', 'demo_camera'])
def test_help_prints_the_usage_and_starts_nothing(program):
    """``--help`` answers at once (exit 0) instead of loading a model or publishing."""
    executable = Path(get_package_prefix('simtrack_ros')) / 'lib' / 'simtrack_ros' / program
    result = subprocess.run([str(executable), '--help'], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f'usage: ros2 run simtrack_ros {program}'), result.stdout
    assert ('search_factor (default 4.0)' in result.stdout) == (program == 'tracker_node')
    assert 'configured' not in result.stdout + result.stderr


def test_help_only_counts_outside_the_ros_arguments():
    assert help_requested(['tracker_node', '-h'])
    assert help_requested(['tracker_node', '--ros-args', '-p', 'a:=1', '--', '--help'])
    assert not help_requested(['tracker_node', '--ros-args', '-p', 'help:=--help'])
