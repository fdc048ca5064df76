"""Tracking core (no ROS): crops, inference engine, confidence/state and the Tracker.

The ROS node uses only :class:`Tracker`, :class:`TrackerOptions`, :class:`EngineOptions`,
:class:`TargetResult` (and the :class:`TrackState` / :class:`StateThresholds` they carry).
"""
from __future__ import annotations

from simtrack_ros.tracking.confidence import (
    corner_confidence,
    StateThresholds,
    TargetStateMachine,
    TrackState,
)
from simtrack_ros.tracking.crop import (
    clip_box,
    crop_window,
    map_box_back,
    sample_target,
    template_anno,
    validate_box,
)
from simtrack_ros.tracking.engine import EngineOptions, InferenceEngine, resolve_device
from simtrack_ros.tracking.preprocess import crop_on_device, normalize
from simtrack_ros.tracking.tracker import (
    TargetResult,
    TIMING_KEYS,
    Tracker,
    TrackerOptions,
    validate_frame,
)

__all__ = [
    'EngineOptions',
    'InferenceEngine',
    'StateThresholds',
    'TIMING_KEYS',
    'TargetResult',
    'TargetStateMachine',
    'TrackState',
    'Tracker',
    'TrackerOptions',
    'clip_box',
    'corner_confidence',
    'crop_on_device',
    'crop_window',
    'map_box_back',
    'normalize',
    'resolve_device',
    'sample_target',
    'template_anno',
    'validate_box',
    'validate_frame',
]
