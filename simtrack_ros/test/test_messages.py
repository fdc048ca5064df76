"""Message builders: boxes, classes by name, UNKNOWN for an untrained head, status, diagnostics."""
from __future__ import annotations

import math

from builtin_interfaces.msg import Time
from diagnostic_msgs.msg import DiagnosticStatus
import numpy as np
import pytest
from simtrack_ros_interfaces.msg import TargetStatus, TrackingChallenge
from std_msgs.msg import Header

from simtrack_ros.challenges import CHALLENGE_NAMES, UNKNOWN_ID
from simtrack_ros.ros import messages
from simtrack_ros.ros.debug_overlay import challenge_label, draw
from simtrack_ros.tracking import TargetResult, TrackState


def _header() -> Header:
    header = Header(frame_id='camera')
    header.stamp.sec, header.stamp.nanosec = 42, 7
    return header


def _result(probabilities=None, names=CHALLENGE_NAMES, multi_label=False,
            state=TrackState.TRACKING, frames_tracked=1) -> TargetResult:
    return TargetResult(
        target_id='boat', box=(10.0, 20.0, 30.0, 40.0), confidence=0.75, state=state,
        class_names=tuple(names),
        probabilities=None if probabilities is None else np.asarray(probabilities, np.float32),
        multi_label=multi_label, frame_index=3, frames_tracked=frames_tracked,
        timings={'total': 12.5})


def test_detection():
    msg = messages.detection(_result(), _header())
    assert msg.header == _header() and msg.id == 'boat'
    assert (msg.bbox.center.position.x, msg.bbox.center.position.y) == (25.0, 40.0)
    assert (msg.bbox.size_x, msg.bbox.size_y, msg.bbox.center.theta) == (30.0, 40.0, 0.0)
    assert len(msg.results) == 1
    assert msg.results[0].hypothesis.class_id == messages.TARGET_CLASS_ID
    assert msg.results[0].hypothesis.score == pytest.approx(0.75)
    array = messages.detection_array([msg, messages.detection(_result(), _header())],
                                     _header())
    assert array.header == _header() and len(array.detections) == 2
    assert list(messages.detection_array([], _header()).detections) == []


def test_challenge_untrained_is_unknown():
    msg = messages.challenge(_result(None), _header())
    assert msg.challenge == UNKNOWN_ID == TrackingChallenge.UNKNOWN
    assert msg.confidence == 0.0 and list(msg.probabilities) == []
    assert list(msg.class_names) == list(CHALLENGE_NAMES)      # named even when UNKNOWN
    assert msg.header == _header() and msg.target_id == 'boat'
    reordered = messages.challenge(_result(None, list(reversed(CHALLENGE_NAMES))), _header())
    assert list(reordered.class_names) == list(CHALLENGE_NAMES)    # always in id order


def test_challenge_classes_are_matched_by_name():
    names = list(reversed(CHALLENGE_NAMES))           # a head trained with another order
    probabilities = np.linspace(0.01, 0.1, 10)
    probabilities[names.index('occlusion')] = 0.5
    probabilities /= probabilities.sum()
    msg = messages.challenge(_result(probabilities, names), _header())
    assert list(msg.class_names) == list(CHALLENGE_NAMES)
    assert msg.challenge == TrackingChallenge.OCCLUSION
    assert msg.confidence == pytest.approx(probabilities.max())
    for name, value in zip(msg.class_names, msg.probabilities):
        assert value == pytest.approx(probabilities[names.index(name)])
    assert not msg.multi_label


def test_challenge_multi_label():
    probabilities = np.full(10, 0.2)
    probabilities[CHALLENGE_NAMES.index('motion_blur')] = 0.9
    probabilities[CHALLENGE_NAMES.index('low_contrast_object')] = 0.8
    msg = messages.challenge(_result(probabilities, multi_label=True), _header())
    assert msg.multi_label and msg.challenge == TrackingChallenge.MOTION_BLUR
    assert sum(msg.probabilities) > 1.0


def test_status():
    results = [_result(state=TrackState.UNCERTAIN, frames_tracked=4),
               _result(state=TrackState.LOST)]
    msg = messages.tracker_status(results, _header(), 33.0, device='cuda:0',
                                  model='simtrack-b16', classification_trained=True)
    assert msg.header == _header() and msg.device == 'cuda:0' and msg.classification_trained
    assert [t.state for t in msg.targets] == [TargetStatus.UNCERTAIN, TargetStatus.LOST]
    target = msg.targets[0]
    assert target.header == _header() and target.frames_tracked == 4
    assert target.processing_time_ms == pytest.approx(12.5)
    assert target.frame_age_ms == pytest.approx(33.0)


def test_diagnostic_array():
    msg = messages.diagnostic_array(Time(sec=5), 'simtrack: tracker', 'cpu',
                                    DiagnosticStatus.WARN, 'demo model',
                                    {'rate': 12.3456, 'trained': False, 'latency': math.nan,
                                     'targets': 2})
    status = msg.status[0]
    assert msg.header.stamp.sec == 5 and status.level == DiagnosticStatus.WARN
    assert status.name == 'simtrack: tracker' and status.hardware_id == 'cpu'
    assert {kv.key: kv.value for kv in status.values} == {
        'rate': '12.346', 'trained': 'false', 'latency': 'n/a', 'targets': '2'}


def test_debug_overlay():
    assert challenge_label(_result()) == 'classes: untrained'
    probabilities = np.full(10, 0.05)
    probabilities[CHALLENGE_NAMES.index('occlusion')] = 0.55
    assert challenge_label(_result(probabilities)) == 'Occlusion 0.55'
    frame = np.zeros((120, 160, 3), np.uint8)
    frame.flags.writeable = False
    drawn = draw(frame, [_result()])
    assert drawn.flags.c_contiguous and drawn.shape == frame.shape and drawn.any()
    assert not frame.any()
    assert draw(frame, []).any()
