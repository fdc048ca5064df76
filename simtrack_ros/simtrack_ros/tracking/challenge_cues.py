"""Measured cues of the tracking challenges, from the frame and the track's boxes.

Several challenges are defined on quantities a search crop cannot show: the crop is cut at a
fixed multiple of the target's size, so the target's size and its change since the first frame
(scale variation, low resolution) are gone, and so are its motion between frames (motion blur)
and where the image border lies (partial visibility). The tracker knows them. Per frame and
target, :func:`measure_cues` returns the :data:`CUE_NAMES` values:

- ``abs_log_scale``: ``|log(area / first area)|`` of the tracked box;
- ``log_area``: ``log`` of the box area in pixels;
- ``speed``: the box centre's move since the previous frame over the frame width;
- ``relative_speed``: the same move over ``sqrt(area)``;
- ``border_gap``: the box's distance to the nearest image border over ``sqrt(area)``, in [0, 2];
- ``abs_log_aspect``: ``|log(aspect / first aspect)|`` (aspect: width over height);
- ``luma_change``: ``|mean luma in the box / mean luma in the first box - 1|``;
- ``contrast``: the RGB distance between the mean colour of the box's centre half and the mean
  colour of a ring around the box (half the box size wide), over 255;
- ``sharpness``: ``log(1 + variance of the Laplacian)`` of the box's grey levels;
- ``frame_sharpness``: the same over the whole first frame (a down-sampled camera is blurred);
- ``confidence``: the tracking confidence (:mod:`.confidence`).

:class:`~simtrack_ros.model.challenge_calibration.ChallengeCalibration` turns them, with the
head's logits, into challenge probabilities.
"""
from __future__ import annotations

from dataclasses import dataclass
import math
from typing import Sequence, Tuple

import cv2
import numpy as np

CUE_NAMES: Tuple[str, ...] = (
    'abs_log_scale', 'log_area', 'speed', 'relative_speed', 'border_gap', 'abs_log_aspect',
    'luma_change', 'contrast', 'sharpness', 'frame_sharpness', 'confidence')
_LUMA = np.array([0.299, 0.587, 0.114], np.float32)
_MAX_BORDER_GAP = 2.0
_TINY = 1e-6
Rect = Tuple[int, int, int, int]


@dataclass(frozen=True)
class CueReference:
    """What a target's cues compare with: its first box, its luma and the frame's sharpness."""

    box: Tuple[float, float, float, float]
    luma: float
    frame_sharpness: float


def _pixel_rect(box: Sequence[float], height: int, width: int, grow: float = 0.0) -> Rect:
    """Integer ``(x1, y1, x2, y2)`` of ``box`` grown by ``grow`` of its size per side, clipped."""
    x, y, w, h = box
    x1 = min(max(int(math.floor(x - grow * w)), 0), width)
    y1 = min(max(int(math.floor(y - grow * h)), 0), height)
    x2 = min(max(int(math.ceil(x + w + grow * w)), x1), width)
    y2 = min(max(int(math.ceil(y + h + grow * h)), y1), height)
    return x1, y1, x2, y2


def _region(frame: np.ndarray, rect: Rect) -> np.ndarray:
    x1, y1, x2, y2 = rect
    return frame[y1:y2, x1:x2]


def box_luma(frame: np.ndarray, box: Sequence[float]) -> float:
    """Mean luma (0..255) of the RGB ``frame`` inside ``box``; 0 when the box is empty."""
    region = _region(frame, _pixel_rect(box, *frame.shape[:2]))
    if not region.size:
        return 0.0
    return float(region.reshape(-1, 3).mean(axis=0) @ _LUMA)


def _sharpness(region: np.ndarray) -> float:
    if min(region.shape[:2]) < 3:
        return 0.0
    grey = cv2.cvtColor(np.ascontiguousarray(region), cv2.COLOR_RGB2GRAY)
    return float(math.log1p(cv2.Laplacian(grey, cv2.CV_32F).var()))


def reference_of(frame: np.ndarray, box: Sequence[float]) -> CueReference:
    """Return the cue reference of a target initialised with ``box`` in the RGB ``frame``."""
    x, y, w, h = (float(v) for v in box)
    return CueReference((x, y, w, h), box_luma(frame, box), _sharpness(frame))


def _contrast(frame: np.ndarray, box: Sequence[float]) -> float:
    height, width = frame.shape[:2]
    x, y, w, h = box
    inner = _region(frame, _pixel_rect((x + w / 4, y + h / 4, w / 2, h / 2), height, width))
    x1, y1, x2, y2 = _pixel_rect(box, height, width, grow=0.5)
    bx1, by1, bx2, by2 = _pixel_rect(box, height, width)
    ring = np.ones((y2 - y1, x2 - x1), bool)
    ring[by1 - y1:by2 - y1, bx1 - x1:bx2 - x1] = False
    if not inner.size or not ring.any():
        return 0.0
    around = frame[y1:y2, x1:x2][ring].astype(np.float32)
    difference = inner.reshape(-1, 3).mean(axis=0) - around.mean(axis=0)
    return float(np.linalg.norm(difference) / 255.0)


def measure_cues(frame: np.ndarray, box: Sequence[float], previous: Sequence[float],
                 reference: CueReference, confidence: float) -> np.ndarray:
    """Return the :data:`CUE_NAMES` values (float32) of ``box`` in the RGB uint8 ``frame``.

    ``previous`` is the target's box in the frame before, ``reference`` its first frame's.
    """
    height, width = frame.shape[:2]
    x, y, w, h = (float(v) for v in box)
    area = max(w * h, _TINY)
    _, _, w0, h0 = reference.box
    px, py, pw, ph = (float(v) for v in previous)
    move = math.hypot(x + w / 2 - px - pw / 2, y + h / 2 - py - ph / 2)
    gap = min(x, y, width - x - w, height - y - h) / math.sqrt(area)
    aspect = math.log(max(w, _TINY) / max(h, _TINY)) - math.log(max(w0, _TINY) / max(h0, _TINY))
    luma_change = abs(box_luma(frame, box) / max(reference.luma, 1.0) - 1.0)
    values = (abs(math.log(area / max(w0 * h0, _TINY))), math.log(area), move / width,
              move / math.sqrt(area), min(max(gap, 0.0), _MAX_BORDER_GAP), abs(aspect),
              luma_change, _contrast(frame, box),
              _sharpness(_region(frame, _pixel_rect(box, height, width))),
              reference.frame_sharpness, confidence if math.isfinite(confidence) else 0.0)
    return np.array(values, np.float32)


__all__ = ['box_luma', 'CUE_NAMES', 'CueReference', 'measure_cues', 'reference_of']
