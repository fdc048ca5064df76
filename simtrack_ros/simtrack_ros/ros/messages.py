"""Builders of the node's output messages from tracker results (pure, no node state).

Every builder takes the header of the source image and puts it into the message unchanged.
"""
from __future__ import annotations

import math
from typing import List, Mapping, Sequence, Tuple

from builtin_interfaces.msg import Time
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from simtrack_ros_interfaces.msg import TargetStatus, TrackerStatus, TrackingChallenge
from std_msgs.msg import Header
from vision_msgs.msg import Detection2D, Detection2DArray, ObjectHypothesisWithPose

from simtrack_ros.challenges import challenge_id, UNKNOWN_ID
from simtrack_ros.tracking import TargetResult

#: ``results[0].hypothesis.class_id`` of every detection: the tracked target.
TARGET_CLASS_ID = 'target'

_STATES = {
    'tracking': TargetStatus.TRACKING,
    'uncertain': TargetStatus.UNCERTAIN,
    'lost': TargetStatus.LOST,
}


def _state_name(result: TargetResult) -> str:
    return getattr(result.state, 'value', result.state)


def detection(result: TargetResult, header: Header) -> Detection2D:
    """Detection2D of one target: box centre/size in pixels, score = tracking confidence."""
    x, y, w, h = result.box
    msg = Detection2D(header=header, id=result.target_id)
    msg.bbox.center.position.x = float(x + w / 2.0)
    msg.bbox.center.position.y = float(y + h / 2.0)
    msg.bbox.center.theta = 0.0
    msg.bbox.size_x = float(w)
    msg.bbox.size_y = float(h)
    hypothesis = ObjectHypothesisWithPose()
    hypothesis.hypothesis.class_id = TARGET_CLASS_ID
    hypothesis.hypothesis.score = float(result.confidence)
    msg.results = [hypothesis]
    return msg


def detection_array(detections: Sequence[Detection2D], header: Header) -> Detection2DArray:
    """All targets' detections of one frame (empty when nothing is tracked)."""
    return Detection2DArray(header=header, detections=list(detections))


def id_ordered(names: Sequence[str], probabilities: Sequence[float]
               ) -> Tuple[List[str], List[float]]:
    """Sort class names and probabilities by message id (classes matched by name)."""
    pairs = sorted(zip(names, probabilities), key=lambda pair: challenge_id(pair[0]))
    return [name for name, _ in pairs], [float(p) for _, p in pairs]


def challenge(result: TargetResult, header: Header) -> TrackingChallenge:
    """Build the TrackingChallenge of one target.

    ``class_names`` always lists the model's classes in id order; without probabilities
    (untrained head, non-finite output) ``challenge`` is UNKNOWN and ``probabilities`` empty.
    """
    msg = TrackingChallenge(header=header, target_id=result.target_id,
                            multi_label=bool(result.multi_label))
    probabilities = result.probabilities
    if probabilities is None or len(probabilities) == 0:
        msg.class_names = sorted(result.class_names, key=challenge_id)
        msg.challenge = UNKNOWN_ID
        msg.confidence = 0.0
        return msg
    names, values = id_ordered(result.class_names, probabilities)
    best = max(range(len(values)), key=values.__getitem__)
    msg.challenge = challenge_id(names[best])
    msg.confidence = values[best]
    msg.class_names = names
    msg.probabilities = values
    return msg


def target_status(result: TargetResult, header: Header, frame_age_ms: float) -> TargetStatus:
    """Per-target state, confidence, timing and frames tracked."""
    return TargetStatus(
        header=header, target_id=result.target_id, state=_STATES[_state_name(result)],
        confidence=float(result.confidence),
        processing_time_ms=float(result.timings.get('total', math.nan)),
        frame_age_ms=float(frame_age_ms), frames_tracked=int(result.frames_tracked))


def tracker_status(results: Sequence[TargetResult], header: Header, frame_age_ms: float,
                   device: str, model: str, classification_trained: bool) -> TrackerStatus:
    """Status of every target of one processed frame."""
    return TrackerStatus(
        header=header, targets=[target_status(r, header, frame_age_ms) for r in results],
        device=device, model=model, classification_trained=bool(classification_trained))


def diagnostic_array(stamp: Time, name: str, hardware_id: str, level: bytes, message: str,
                     values: Mapping[str, object]) -> DiagnosticArray:
    """Build a DiagnosticArray with one status; ``level`` is a ``DiagnosticStatus`` constant."""
    status = DiagnosticStatus(
        level=level, name=name, message=message, hardware_id=hardware_id,
        values=[KeyValue(key=str(key), value=_text(value)) for key, value in values.items()])
    return DiagnosticArray(header=Header(stamp=stamp), status=[status])


def _text(value: object) -> str:
    if isinstance(value, bool):
        return 'true' if value else 'false'
    if isinstance(value, float):
        return f'{value:.3f}' if math.isfinite(value) else 'n/a'
    return str(value)
