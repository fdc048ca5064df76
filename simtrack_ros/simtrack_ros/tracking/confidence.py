"""Tracking confidence from the corner heat maps, and the per-target track state.

Confidence definition. The corner head predicts each box corner as the soft-argmax of a
heat map (logits over the ``H x W`` search grid). For each corner map:

1. ``p = softmax`` over all ``H*W`` cells (the distribution the soft-argmax averages over);
2. ``(r, c)`` = the soft-argmax location in cells, rounded to the nearest cell;
3. ``mass`` = the probability inside the ``(2k+1) x (2k+1)`` cell window centred on
   ``(r, c)`` (clipped at the map edge), with ``k = window_radius`` (default 1: 3 x 3 cells).

``confidence = sqrt(mass_tl * mass_br)``, the geometric mean over the two corners, in [0, 1].
A one-hot map gives 1. A flat map gives ``(2k+1)^2 / (H*W)`` (9/196 = 0.046 on the 14 x 14
grid). Two distant peaks give ~0: the soft-argmax falls between them. Non-finite values
(NaN or inf logits) give 0.

Track state. :class:`TargetStateMachine` turns the confidence sequence into
``tracking`` / ``uncertain`` / ``lost`` with hysteresis (see :class:`StateThresholds`).
"""
from __future__ import annotations

from dataclasses import dataclass
import enum
import math

import numpy as np
import torch

#: Default half-size (cells) of the window around the soft-argmax.
WINDOW_RADIUS = 1


def _peak_mass(logits: torch.Tensor, radius: int) -> torch.Tensor:
    """Softmax mass within ``radius`` cells of the rounded soft-argmax, per map (B)."""
    batch, rows, cols = logits.shape
    prob = torch.softmax(logits.reshape(batch, -1).double(), dim=1).reshape(batch, rows, cols)
    row_index = torch.arange(rows, dtype=prob.dtype)
    col_index = torch.arange(cols, dtype=prob.dtype)
    peak_row = (prob.sum(dim=2) * row_index).sum(dim=1).round()
    peak_col = (prob.sum(dim=1) * col_index).sum(dim=1).round()
    in_rows = (row_index[None, :] - peak_row[:, None]).abs() <= radius
    in_cols = (col_index[None, :] - peak_col[:, None]).abs() <= radius
    window = in_rows[:, :, None] & in_cols[:, None, :]
    return (prob * window).sum(dim=(1, 2))


def corner_confidence(score_map_tl: torch.Tensor, score_map_br: torch.Tensor,
                      window_radius: int = WINDOW_RADIUS) -> np.ndarray:
    """Per-sample confidence (float32 array of length B) from B×H×W corner logits."""
    if score_map_tl.dim() != 3 or score_map_tl.shape != score_map_br.shape:
        raise ValueError(f'corner maps must both be B x H x W, got {tuple(score_map_tl.shape)}'
                         f' and {tuple(score_map_br.shape)}')
    if window_radius < 0:
        raise ValueError(f'window_radius must be >= 0, got {window_radius}')
    tl = _peak_mass(score_map_tl.detach().cpu(), window_radius)
    br = _peak_mass(score_map_br.detach().cpu(), window_radius)
    confidence = torch.sqrt(tl * br).numpy()
    return np.clip(np.nan_to_num(confidence, nan=0.0, posinf=0.0, neginf=0.0),
                   0.0, 1.0).astype(np.float32)


class TrackState(str, enum.Enum):
    """Per-target state; the value is the word used in messages and logs."""

    TRACKING = 'tracking'
    UNCERTAIN = 'uncertain'
    LOST = 'lost'


@dataclass(frozen=True)
class StateThresholds:
    """Confidence thresholds of the state machine (defaults to tune on real weights).

    Attributes:
        uncertain_below: ``tracking`` becomes ``uncertain`` when confidence drops below this.
        lost_below: a frame below this counts as a low frame.
        recover_above: ``uncertain`` or ``lost`` return to ``tracking`` at or above this
            (hysteresis: at least ``uncertain_below``).
        lost_after_frames: consecutive low frames that make a target ``lost``.
    """

    uncertain_below: float = 0.3
    lost_below: float = 0.1
    recover_above: float = 0.4
    lost_after_frames: int = 5

    def __post_init__(self) -> None:
        values = (self.lost_below, self.uncertain_below, self.recover_above)
        if not all(isinstance(v, (int, float)) and math.isfinite(v) for v in values):
            raise ValueError(f'thresholds must be finite numbers, got {self}')
        if not 0.0 <= self.lost_below <= self.uncertain_below <= self.recover_above <= 1.0:
            raise ValueError('thresholds must satisfy 0 <= lost_below <= uncertain_below <= '
                             f'recover_above <= 1, got {self}')
        if isinstance(self.lost_after_frames, bool) or not isinstance(
                self.lost_after_frames, int) or self.lost_after_frames < 1:
            raise ValueError(
                f'lost_after_frames must be an int >= 1, got {self.lost_after_frames!r}')


class TargetStateMachine:
    """Hysteresis over the confidence sequence of one target; starts in ``tracking``."""

    def __init__(self, thresholds: StateThresholds) -> None:
        self.thresholds = thresholds
        self.state = TrackState.TRACKING
        self.low_frames = 0

    def update(self, confidence: float) -> TrackState:
        """Feed one frame's confidence (non-finite counts as 0); return the new state."""
        t = self.thresholds
        if not math.isfinite(confidence):
            confidence = 0.0
        self.low_frames = self.low_frames + 1 if confidence < t.lost_below else 0
        if self.low_frames >= t.lost_after_frames:
            self.state = TrackState.LOST
        elif self.state is TrackState.TRACKING:
            if confidence < t.uncertain_below:
                self.state = TrackState.UNCERTAIN
        elif confidence >= t.recover_above:
            self.state = TrackState.TRACKING
        return self.state
