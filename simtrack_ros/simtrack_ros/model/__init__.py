"""SimTrack with a tracking-challenge head: model, configurations and checkpoints (no ROS)."""
from __future__ import annotations

from simtrack_ros.model.checkpoint import (
    CheckpointError,
    load_checkpoint,
    load_clip_weights,
    load_official_state_dict,
    LoadReport,
    save_checkpoint,
)
from simtrack_ros.model.config import get_config, SimTrackConfig
from simtrack_ros.model.simtrack import build_model, SimTrack

__all__ = [
    'CheckpointError',
    'LoadReport',
    'SimTrack',
    'SimTrackConfig',
    'build_model',
    'get_config',
    'load_checkpoint',
    'load_clip_weights',
    'load_official_state_dict',
    'save_checkpoint',
]
