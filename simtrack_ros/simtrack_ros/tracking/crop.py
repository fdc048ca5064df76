"""Crop geometry of the official SimTrack test-time procedure (STARK's ``sample_target``).

Pure functions on plain numbers and numpy arrays; boxes are ``(x, y, w, h)`` in image pixels
with (x, y) the top-left corner. The arithmetic follows the official tracker step by step,
including its precision: crop side and crop origin in double precision with Python's
half-to-even ``round``; ``template_anno`` and the scaling of the predicted box in single
precision (the official code does these on fp32 tensors).
"""
from __future__ import annotations

import math
from typing import Sequence, Tuple

import cv2
import numpy as np

#: Margin (pixels) of the official ``clip_box`` call after every frame.
CLIP_MARGIN = 10

Box = Tuple[float, float, float, float]
Window = Tuple[int, int, int]


def validate_box(box: Sequence[float], height: int, width: int) -> Box:
    """Return ``box`` as four floats, or raise ValueError if no tracker could use it.

    Rejected: not four numbers, NaN/inf, ``w <= 0`` or ``h <= 0``, boxes wider or taller than
    the ``height`` x ``width`` image (no target is; such a box would make a crop window of many
    times the image, gigabytes for a typo), and boxes with no overlap with the image.
    """
    try:
        values = tuple(float(v) for v in box)
    except (TypeError, ValueError):
        raise ValueError(f'box must be four numbers (x, y, w, h), got {box!r}') from None
    if len(values) != 4:
        raise ValueError(f'box must be four numbers (x, y, w, h), got {len(values)} values')
    x, y, w, h = values
    if not all(math.isfinite(v) for v in values):
        raise ValueError(f'box {values} contains NaN or infinite values')
    if w <= 0 or h <= 0:
        raise ValueError(f'box {values} has non-positive width or height: width and height '
                         'must be positive')
    if w > width or h > height:
        raise ValueError(f'box {values} is {w:g} x {h:g} pixels, larger than the {width}x{height} '
                         'image')
    if x >= width or y >= height or x + w <= 0 or y + h <= 0:
        raise ValueError(f'box {values} lies entirely outside the {width}x{height} image')
    return values


def crop_window(box: Sequence[float], factor: float) -> Window:
    """Square crop window ``(x1, y1, side)`` of the official procedure.

    ``side = ceil(sqrt(w*h) * factor)``; ``x1 = round(cx - side/2)`` with Python's
    half-to-even ``round`` (likewise ``y1``).
    """
    x, y, w, h = (float(v) for v in box)
    side = math.ceil(math.sqrt(w * h) * factor)
    if side < 1:
        raise ValueError(f'box {tuple(box)} is too small for a crop (side {side})')
    return round(x + 0.5 * w - side * 0.5), round(y + 0.5 * h - side * 0.5), side


def valid_extent(start: int, side: int, size: int) -> Tuple[int, int]:
    """Image coordinates ``[lo, hi)`` that a window ``[start, start+side)`` copies.

    The official right/bottom pad is ``max(end - size + 1, 0)``, so the last image column
    (row) is never copied: it is replaced by zeros whenever the window reaches it.
    ``hi <= lo`` means the window copies nothing (it is zero padding only).
    """
    return max(start, 0), min(start + side, size - 1)


def extract_window(frame: np.ndarray, window: Window) -> np.ndarray:
    """Copy the ``side`` x ``side`` zero-padded window of ``frame`` (before resizing).

    Equals the official crop-and-``copyMakeBorder`` wherever that is defined; a window that
    misses the image entirely is all zeros (the official slicing is undefined there).
    """
    x1, y1, side = window
    height, width = frame.shape[:2]
    canvas = np.zeros((side, side) + frame.shape[2:], dtype=frame.dtype)
    col_lo, col_hi = valid_extent(x1, side, width)
    row_lo, row_hi = valid_extent(y1, side, height)
    if col_hi > col_lo and row_hi > row_lo:
        canvas[row_lo - y1:row_hi - y1, col_lo - x1:col_hi - x1] = \
            frame[row_lo:row_hi, col_lo:col_hi]
    return canvas


def crop_and_resize(frame: np.ndarray, window: Window, output_size: int) -> np.ndarray:
    """Resize the window's zero-padded pixels to ``output_size`` (``cv2.INTER_LINEAR``)."""
    return cv2.resize(extract_window(frame, window), (output_size, output_size),
                      interpolation=cv2.INTER_LINEAR)


def sample_target(frame: np.ndarray, box: Sequence[float], factor: float,
                  output_size: int) -> Tuple[np.ndarray, float]:
    """Official crop: window of ``factor`` times the target scale, zero padded, resized.

    Returns the ``output_size`` x ``output_size`` uint8 crop (``cv2.resize`` INTER_LINEAR)
    and ``resize_factor = output_size / side``.
    """
    window = crop_window(box, factor)
    return crop_and_resize(frame, window, output_size), output_size / window[2]


def template_anno(box: Sequence[float], resize_factor: float, template_size: int) -> np.ndarray:
    """Target box inside the template crop, ``(x1, y1, w, h) / template_size`` (float32).

    The box is taken as centred at ``template_size / 2``; ``w * resize_factor`` and
    ``h * resize_factor`` are single-precision products and x1, y1 are truncated toward zero
    (``int``), as in the official tracker.
    """
    scale = np.float32(resize_factor)
    width = np.float32(box[2]) * scale
    height = np.float32(box[3]) * scale
    centre = np.float32(template_size / 2)
    half = np.float32(2)
    anno = np.array([int(centre - width / half), int(centre - height / half), width, height],
                    dtype=np.float32)
    return anno / np.float32(template_size)


def map_box_back(pred_cxcywh: Sequence[float], prev_box: Sequence[float],
                 resize_factor: float, search_size: int) -> Box:
    """Map a predicted box (cx, cy, w, h normalised to the search crop) to image xywh.

    The crop is centred on the previous box's centre; the scaling to pixels is done in
    single precision like the official ``pred_boxes * search_size / resize_factor``.
    """
    pred = np.asarray(pred_cxcywh, dtype=np.float32)
    cx, cy, w, h = (float(v) for v in pred * np.float32(search_size) / np.float32(resize_factor))
    half_side = 0.5 * search_size / resize_factor
    prev_cx = prev_box[0] + 0.5 * prev_box[2]
    prev_cy = prev_box[1] + 0.5 * prev_box[3]
    cx_img = cx + (prev_cx - half_side)
    cy_img = cy + (prev_cy - half_side)
    return (cx_img - 0.5 * w, cy_img - 0.5 * h, w, h)


def clip_box(box: Sequence[float], height: int, width: int, margin: int = CLIP_MARGIN) -> Box:
    """Official ``clip_box``: keep at least ``margin`` pixels of the box inside the image."""
    x1, y1, w, h = (float(v) for v in box)
    x2, y2 = x1 + w, y1 + h
    x1 = min(max(0.0, x1), width - margin)
    x2 = min(max(margin, x2), width)
    y1 = min(max(0.0, y1), height - margin)
    y2 = min(max(margin, y2), height)
    return (float(x1), float(y1), float(max(margin, x2 - x1)), float(max(margin, y2 - y1)))
