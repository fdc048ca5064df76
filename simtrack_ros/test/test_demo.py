"""The out-of-the-box demo end to end, its camera, its scoring, and the default demo weights.

Stopping it by a signal: see test_shutdown.py.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
import re
import subprocess
import sys

import cv2
from node_helpers import TrackerUnderTest
import numpy as np
import pytest
from rclpy.parameter import Parameter
from sensor_msgs.msg import Image
from vision_msgs.msg import Detection2D

from simtrack_ros.data.sequences import write_sequence
from simtrack_ros.evaluation.ope import SUCCESS_THRESHOLDS
from simtrack_ros.model import build_model, get_config, save_checkpoint
from simtrack_ros.ros import demo, demo_report, demo_settings, model_loading
from simtrack_ros.ros.demo_camera import (DemoCameraNode, frame_key, ground_truth_message,
                                          parse_frame_key, SequencePlayer)
from simtrack_ros.ros.demo_report import FrameOutput, Recording, SequenceRecord

#: Start-up (imports, sequence generation, model), 40 frames at 30 Hz, outputs, shutdown.
TIMEOUT_S = 180
SUMMARY = re.compile(r'^summary: 1 sequences, (\d+) frames shown, (\d+) tracked .*?'
                     r'([\d.]+) fps', re.MULTILINE)
BOX_SCORES = re.compile(r'success AUC ([\d.]+)  OP50 ([\d.]+)')
CHALLENGE_SCORES = re.compile(r'challenges \((\d+) frames\): accuracy ([\d.]+)  macro-F1 ([\d.]+)')


def _demo(args, domain_id: int) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != '_ROS_WHEELS_BOOTSTRAP_COMPLETE'}
    # This session's own domain, so parallel test runs cannot answer the demo's calls.
    env['ROS_DOMAIN_ID'] = str(domain_id)
    env['ROS_AUTOMATIC_DISCOVERY_RANGE'] = 'LOCALHOST'
    return subprocess.run([sys.executable, '-m', 'simtrack_ros.ros.demo', '--device', 'cpu',
                           *args], env=env, capture_output=True, text=True, timeout=TIMEOUT_S)


def _checkpoint(path: Path, heads=('box', 'cls')) -> Path:
    """Write a 'small' multi-label model with random weights, its heads marked trained."""
    model = build_model(get_config('small', multi_label=True))
    model.trained_heads = set(heads)
    return save_checkpoint(model, path)


def _sequence(folder: Path, name: str, boxes, absent=None):
    frames = [np.full((48, 64, 3), 40 * i, np.uint8) for i in range(len(boxes))]
    return write_sequence(folder / name, frames, boxes, absent=absent, image_format='png')


# ------------------------------------------------------------------ camera
def test_ground_truth_message_has_image_header_and_box():
    image = Image(width=640, height=480)
    image.header.frame_id = 'camera'
    image.header.stamp.sec, image.header.stamp.nanosec = 12, 345
    detection = ground_truth_message(image, (100.0, 50.0, 40.0, 20.0))
    assert detection.header.frame_id == 'camera' and detection.id == 'ground_truth'
    assert (detection.header.stamp.sec, detection.header.stamp.nanosec) == (12, 345)
    assert detection.bbox.center.position.x == 120.0 and detection.bbox.center.position.y == 60.0
    assert (detection.bbox.size_x, detection.bbox.size_y) == (40.0, 20.0)
    assert detection.results[0].hypothesis.score == 1.0
    absent = ground_truth_message(image, (float('nan'),) * 4, frame_key('seq', 3), False)
    assert absent.bbox.size_x == 0.0 and absent.results[0].hypothesis.score == 0.0
    assert parse_frame_key(absent.id) == ('seq', 3)
    assert parse_frame_key('ground_truth') is None and parse_frame_key('a:b:12') == ('a:b', 12)


def test_sequence_player_plays_in_order_then_stops_or_loops(tmp_path):
    first = _sequence(tmp_path, 'one', [(1, 2, 3, 4), (2, 2, 3, 4)])
    second = _sequence(tmp_path, 'two', [(5, 5, 5, 5), (0, 0, 0, 0)], absent=[0, 1])
    player = SequencePlayer([first, second], loop=False)
    frames = [player.next_frame() for _ in range(4)]
    assert [f[3] for f in frames] == ['one:0', 'one:1', 'two:0', 'two:1']
    assert [f[4] for f in frames] == [True, True, True, False]    # two:1 is absent
    assert frames[1][2] == (2, 2, 3, 4) and frames[0][1] == 'rgb8'
    assert int(frames[1][0][0, 0, 0]) == 40 and frames[0][0].shape == (48, 64, 3)
    assert player.next_frame() is None
    looping = SequencePlayer([first], loop=True)
    assert [looping.next_frame()[3] for _ in range(3)] == ['one:0', 'one:1', 'one:0']


def test_camera_generates_and_publishes_the_demo_sequences_on_its_own(ros):
    camera = ros.add(DemoCameraNode(
        context=ros.context, namespace=ros.namespace,
        parameter_overrides=[Parameter('generate', value=1), Parameter('fps', value=30.0)]))
    folder = Path(camera._generated.name) / 'test' / 'synth_test_00001'
    assert (folder / 'annotations.jsonl').is_file() and len(list(folder.glob('*.jpg'))) == 150
    truths = ros.subscribe(Detection2D, ros.topic('demo_camera/ground_truth'))
    images = ros.subscribe(Image, ros.topic('image'))
    assert ros.wait_for(lambda: len(truths) >= 5 and len(images) >= 5)
    keys = [parse_frame_key(t.id) for t in truths[:5]]
    assert [k[0] for k in keys] == ['synth_test_00001'] * 5
    assert np.all(np.diff([k[1] for k in keys]) == 1)   # consecutive frames, in order
    image = images[0]
    assert (image.width, image.height, image.encoding) == (640, 360, 'rgb8')
    assert any(t.header == image.header for t in truths)


# ------------------------------------------------------------------ scoring
def test_skipped_frames_keep_the_last_box_and_scores_follow(tmp_path):
    boxes = [(10.0, 10.0, 20.0, 20.0), (12.0, 10.0, 20.0, 20.0), (14.0, 10.0, 20.0, 20.0),
             (16.0, 10.0, 20.0, 20.0)]
    record = SequenceRecord(_sequence(tmp_path, 'seq', boxes), ('calm',), 'vessel-1', shown=4)
    record.outputs[2] = FrameOutput(boxes[2], 0.9)          # frames 1 and 3 were skipped
    held = demo_report.held_boxes(record)
    np.testing.assert_array_equal(held, [boxes[0], boxes[0], boxes[2], boxes[2]])
    record.tracked_s = 0.5
    summary = demo_report.score(Recording([record]))
    ious = [18 * 20 / (22 * 20), 1.0, 18 * 20 / (22 * 20)]  # IoU of frames 1-3 (0: template)
    expected = np.mean([(np.array(ious) > t).mean() for t in SUCCESS_THRESHOLDS])
    assert summary['auc'] == pytest.approx(expected)
    assert summary['op50'] == 1.0 and summary['frames'] == 3
    assert summary['frames_shown'] == 4 and summary['frames_tracked'] == 1
    assert summary['fps'] == pytest.approx(2.0) and summary['classification'] is None
    assert summary['per_sequence']['seq']['target_id'] == 'vessel-1'
    lines = demo_report.summary_lines(summary)
    assert lines[0].startswith('summary: 1 sequences, 4 frames shown, 1 tracked (25 %), 2.0 fps')
    assert f'success AUC {expected:.3f}  OP50 1.000' in lines[1]


# ------------------------------------------------------------------ default weights
@pytest.fixture
def demo_prefix(tmp_path, monkeypatch):
    """Put an ament prefix holding simtrack_ros with demo weights first on the search path."""
    prefix = tmp_path / 'prefix'
    marker = prefix / 'share' / 'ament_index' / 'resource_index' / 'packages' / 'simtrack_ros'
    marker.parent.mkdir(parents=True)
    marker.write_text('')
    weights = prefix / 'share' / 'simtrack_ros' / model_loading.DEMO_WEIGHTS
    weights.parent.mkdir(parents=True)
    _checkpoint(weights)
    monkeypatch.setenv('AMENT_PREFIX_PATH',
                       os.pathsep.join([str(prefix), os.environ.get('AMENT_PREFIX_PATH', '')]))
    return weights


def test_empty_weights_load_the_package_demo_weights(demo_prefix):
    loaded = model_loading.load_model('', 'auto')
    assert loaded.description == f'demo weights {demo_prefix} (small)'
    assert loaded.box_trained and loaded.model.config.name == 'small'
    assert loaded.model.trained_heads == {'box', 'cls'} and loaded.model.config.multi_label
    assert f"running the package's demo weights {demo_prefix}" in loaded.notes[0]
    assert not loaded.warnings
    # An explicit configuration keeps the random-weights model of that configuration.
    tiny = model_loading.load_model('', 'tiny')
    assert tiny.description == 'demo model (tiny, random weights)' and not tiny.box_trained
    assert "model_config is 'tiny'" in tiny.warnings[0] and 'RANDOM' in tiny.warnings[0]


def test_without_demo_weights_the_random_model_runs_loudly(tmp_path, monkeypatch):
    monkeypatch.setenv('AMENT_PREFIX_PATH', str(tmp_path / 'empty'))
    monkeypatch.setattr(model_loading, '_SOURCE_PACKAGE', tmp_path / 'checkout')
    assert model_loading.find_demo_weights() is None
    loaded = model_loading.load_model('', 'auto')
    assert loaded.description == 'demo model (tiny, random weights)' and not loaded.box_trained
    assert 'no demo weights' in loaded.warnings[0] and 'RANDOM' in loaded.warnings[0]
    assert str(tmp_path / 'checkout' / model_loading.DEMO_WEIGHTS) in loaded.warnings[0]


def test_source_tree_weights_are_found_without_an_installed_copy(tmp_path, monkeypatch):
    monkeypatch.setenv('AMENT_PREFIX_PATH', str(tmp_path / 'empty'))
    monkeypatch.setattr(model_loading, '_SOURCE_PACKAGE', tmp_path / 'checkout')
    weights = tmp_path / 'checkout' / model_loading.DEMO_WEIGHTS
    weights.parent.mkdir(parents=True)
    _checkpoint(weights)
    assert model_loading.find_demo_weights() == weights


def test_node_without_weights_runs_the_demo_weights_and_says_so(demo_prefix, ros, capfd):
    node = TrackerUnderTest(ros)
    node.start_tracking()
    values = node.diagnostics()
    assert values['model'] == f'demo weights {demo_prefix} (small)'
    assert values['classification trained'] == 'true' and values['load error'] == 'none'
    log = capfd.readouterr().err
    assert f"running the package's demo weights {demo_prefix}" in log, log


def test_demo_sets_the_tuned_search_factor_only_for_the_demo_weights(tmp_path):
    parser_options = demo._parse([])
    arguments = demo._parameter_args(parser_options, tmp_path)
    assert f'simtrack:search_factor:={demo_settings.DEMO_SEARCH_FACTOR}' in arguments
    mine = tmp_path / 'mine.pth'
    mine.write_bytes(b'weights')
    own = demo._parameter_args(demo._parse(['--weights', str(mine)]), tmp_path)
    assert f'simtrack:weights:={mine}' in own
    assert not any(a.startswith('simtrack:search_factor') for a in own)
    # Given, the factor reaches the node with any weights (an export of the demo weights).
    given = demo._parameter_args(
        demo._parse(['--weights', str(mine), '--search-factor', '3']), tmp_path)
    assert 'simtrack:search_factor:=3.0' in given


@pytest.mark.parametrize('argv, message', [
    (['--weights', '/nonexistent.pth'], "--weights: weights file '/nonexistent.pth' not found"),
    (['--search-factor', '0.5'], '--search-factor: search_factor must be in [1.0, 10.0]'),
    (['--device', 'tpu'], '--device: device'),
])
def test_demo_refuses_bad_options_before_starting(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        demo._parse(argv)
    assert exit_info.value.code == 2 and message in capsys.readouterr().err


# ------------------------------------------------------------------ end to end
def test_demo_tracks_scores_and_writes_its_outputs(ros_domain_id, tmp_path):
    # Seed 7's first sequence (a turn while approaching) is one the demo weights track; the
    # default seed's first is in fog.
    result = _demo(['--sequences', '1', '--frames', '40', '--seed', '7', '--out',
                    str(tmp_path)], ros_domain_id)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert re.search(r"^tracker weights: .*demo_small.pth \(the package's demo weights\), "
                     r'search factor 3$', result.stdout, re.MULTILINE), output
    assert 'sequence 1/1 synth_test_00001 (staged: ' in result.stdout
    assert 'tracking vessel-1; used the frame with stamp' in result.stdout, output
    summary = SUMMARY.search(result.stdout)
    assert summary and int(summary.group(1)) == 40 and int(summary.group(2)) > 10, output
    auc, op50 = (float(v) for v in BOX_SCORES.search(result.stdout).groups())
    assert auc >= 0.3 and 0.0 <= op50 <= 1.0, output
    challenge = CHALLENGE_SCORES.search(result.stdout)
    assert challenge and int(challenge.group(1)) > 10, output
    assert re.search(r'^OK: tracked \d+ frames, success AUC', result.stdout, re.MULTILINE)
    # The video and the contact sheet open and show what was tracked.
    video = next(tmp_path.glob('demo.*'))
    capture = cv2.VideoCapture(str(video))
    frames = 0
    while capture.read()[0]:
        frames += 1
    capture.release()
    assert frames == 40
    sheet = cv2.imread(str(tmp_path / 'demo_contact_sheet.jpg'))
    assert sheet is not None and sheet.shape[0] > 200 and sheet.shape[1] > 1000
    scores = json.loads((tmp_path / 'summary.json').read_text())
    assert scores['auc'] == pytest.approx(auc, abs=1e-3) and scores['frames_shown'] == 40
    # The end of the run, its shutdown included, is clean (no InvalidHandle from a timer).
    assert 'Traceback' not in output and 'Error' not in output, output


def test_demo_exits_non_zero_when_tracking_fails(ros_domain_id, tmp_path):
    weights = _checkpoint(tmp_path / 'random.pth', heads=('box',))
    result = _demo(['--sequences', '1', '--frames', '20', '--weights', str(weights),
                    '--min-auc', '0.5', '--out', str(tmp_path / 'out')], ros_domain_id)
    output = result.stdout + result.stderr
    assert result.returncode == 1, output
    assert re.search(r'FAILED: tracking failed: success AUC [\d.]+ is below --min-auc 0.5',
                     result.stderr), output
    assert SUMMARY.search(result.stdout), output
    assert 'Traceback' not in output, output
