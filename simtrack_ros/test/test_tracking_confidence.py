"""Corner-map confidence and the track-state machine."""
from __future__ import annotations

import math

import pytest
import torch

from simtrack_ros.tracking.confidence import (
    corner_confidence, StateThresholds, TargetStateMachine, TrackState)

GRID = 14
PEAK = 1e4


def one_hot(row: int, col: int) -> torch.Tensor:
    maps = torch.zeros(1, GRID, GRID)
    maps[0, row, col] = PEAK
    return maps


def test_one_hot_maps_give_one_even_at_the_edge():
    assert corner_confidence(one_hot(3, 4), one_hot(10, 11))[0] == pytest.approx(1.0)
    assert corner_confidence(one_hot(0, 0), one_hot(GRID - 1, GRID - 1))[0] == \
        pytest.approx(1.0)


def test_flat_maps_give_window_share():
    flat = torch.zeros(2, GRID, GRID)
    assert corner_confidence(flat, flat) == pytest.approx([9 / GRID ** 2] * 2)
    assert corner_confidence(flat, flat, window_radius=0)[0] == pytest.approx(1 / GRID ** 2)


def test_geometric_mean_and_split_peaks():
    flat = torch.zeros(1, GRID, GRID)
    assert corner_confidence(one_hot(5, 5), flat)[0] == pytest.approx(math.sqrt(9 / GRID ** 2))
    split = one_hot(0, 0) + one_hot(GRID - 1, GRID - 1)   # soft-argmax falls in between
    assert corner_confidence(split, split)[0] < 1e-3


def test_non_finite_maps_give_zero():
    nan = torch.full((1, GRID, GRID), float('nan'))
    assert corner_confidence(nan, one_hot(1, 1))[0] == 0.0
    inf = one_hot(1, 1)
    inf[0, 2, 2] = float('inf')
    assert corner_confidence(inf, inf)[0] == 0.0


def test_bad_maps_rejected():
    with pytest.raises(ValueError, match='B x H x W'):
        corner_confidence(torch.zeros(GRID, GRID), torch.zeros(GRID, GRID))
    with pytest.raises(ValueError, match='window_radius'):
        corner_confidence(one_hot(1, 1), one_hot(1, 1), window_radius=-1)


@pytest.mark.parametrize('kwargs', [
    {'uncertain_below': 0.5, 'lost_below': 0.6},
    {'uncertain_below': 0.5, 'recover_above': 0.4},
    {'recover_above': 1.5},
    {'lost_below': -0.1},
    {'lost_below': float('nan')},
    {'lost_after_frames': 0},
    {'lost_after_frames': 2.5},
    {'lost_after_frames': True},
])
def test_thresholds_validated(kwargs):
    with pytest.raises(ValueError):
        StateThresholds(**kwargs)


def test_state_hysteresis():
    machine = TargetStateMachine(StateThresholds(
        uncertain_below=0.5, lost_below=0.2, recover_above=0.7, lost_after_frames=3))
    steps = [
        (0.9, TrackState.TRACKING),
        (0.6, TrackState.TRACKING),     # above uncertain_below
        (0.4, TrackState.UNCERTAIN),
        (0.6, TrackState.UNCERTAIN),    # hysteresis: below recover_above
        (0.7, TrackState.TRACKING),
        (0.1, TrackState.UNCERTAIN),    # one low frame
        (0.1, TrackState.UNCERTAIN),
        (0.3, TrackState.UNCERTAIN),    # streak broken
        (0.1, TrackState.UNCERTAIN),
        (0.1, TrackState.UNCERTAIN),
        (float('nan'), TrackState.LOST),  # third low frame in a row
        (0.5, TrackState.LOST),
        (0.69, TrackState.LOST),
        (0.8, TrackState.TRACKING),
    ]
    for confidence, expected in steps:
        assert machine.update(confidence) is expected, confidence
    assert TrackState.LOST.value == 'lost'
