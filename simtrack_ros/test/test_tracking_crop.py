"""Crop geometry against values worked out by hand and a literal official-procedure check."""
from __future__ import annotations

import math

import cv2
import numpy as np
import pytest
import torch

from simtrack_ros.tracking.crop import (
    clip_box, crop_window, extract_window, map_box_back, sample_target,
    template_anno, validate_box)

TEMPLATE_SIZE = 112
SEARCH_SIZE = 224


def ramp_frame(height: int = 5, width: int = 6) -> np.ndarray:
    """Pixel (r, c) holds 10*r + c + 1 in every channel (0 marks padding)."""
    values = 10 * np.arange(height)[:, None] + np.arange(width)[None, :] + 1
    return np.repeat(values[:, :, None], 3, axis=2).astype(np.uint8)


def official_sample_target(frame, box, factor, output_size):
    """Crop as the official routine does (crop, copyMakeBorder, resize), for cross-checks."""
    x, y, w, h = box
    side = math.ceil(math.sqrt(w * h) * factor)
    x1 = round(x + 0.5 * w - side * 0.5)
    y1 = round(y + 0.5 * h - side * 0.5)
    x2, y2 = x1 + side, y1 + side
    x1_pad, y1_pad = max(0, -x1), max(0, -y1)
    x2_pad = max(x2 - frame.shape[1] + 1, 0)
    y2_pad = max(y2 - frame.shape[0] + 1, 0)
    crop = frame[y1 + y1_pad:y2 - y2_pad, x1 + x1_pad:x2 - x2_pad, :]
    padded = cv2.copyMakeBorder(crop, y1_pad, y2_pad, x1_pad, x2_pad, cv2.BORDER_CONSTANT)
    return cv2.resize(padded, (output_size, output_size)), output_size / side


def test_crop_window_by_hand():
    # side = ceil(sqrt(1200) * 2) = ceil(69.28) = 70; cx = 25 -> x1 = -10; cy = 40 -> y1 = 5
    assert crop_window((10, 20, 30, 40), 2.0) == (-10, 5, 70)
    # sqrt(w*h) * factor exact: side 224 for a 56 x 56 box at factor 4
    assert crop_window((100, 50, 56, 56), 4.0) == (16, -34, 224)


def test_crop_window_rounds_half_to_even():
    # side 6; x1 = 1 + 1.5 - 3 = -0.5 -> 0 (half away from zero would give -1);
    # y1 = 2 + 1.5 - 3 = 0.5 -> 0 (half up would give 1)
    assert crop_window((1, 2, 3, 3), 2.0) == (0, 0, 6)
    # y1 = 3 + 1.5 - 3 = 1.5 -> 2
    assert crop_window((1, 3, 3, 3), 2.0) == (0, 2, 6)


def test_extract_window_pads_left_and_top():
    frame = ramp_frame()
    got = extract_window(frame, (-2, -1, 4))[..., 0]
    expected = np.array([[0, 0, 0, 0],
                         [0, 0, 1, 2],
                         [0, 0, 11, 12],
                         [0, 0, 21, 22]])
    np.testing.assert_array_equal(got, expected)


def test_extract_window_right_bottom_quirk_drops_last_row_and_column():
    frame = ramp_frame()  # 5 rows x 6 columns: last column 5, last row 4
    got = extract_window(frame, (3, 2, 4))[..., 0]
    expected = np.array([[24, 25, 0, 0],     # column 5 (value 26) is dropped
                         [34, 35, 0, 0],
                         [0, 0, 0, 0],       # row 4 is dropped
                         [0, 0, 0, 0]])
    np.testing.assert_array_equal(got, expected)
    # The window ends exactly at the border (x2 == W): the last column is still dropped.
    np.testing.assert_array_equal(extract_window(frame, (2, 0, 4))[0, :, 0], [3, 4, 5, 0])
    # x2 == W - 1: no padding at all.
    np.testing.assert_array_equal(extract_window(frame, (1, 0, 4))[0, :, 0], [2, 3, 4, 5])


def test_extract_window_outside_image_is_zero():
    assert not extract_window(ramp_frame(), (50, 50, 4)).any()
    assert not extract_window(ramp_frame(), (-9, -9, 4)).any()


def test_sample_target_bilinear_by_hand():
    # A 2 x 2 canvas [[0, 100], [0, 100]] upsampled to 4: source x = -0.25, 0.25, 0.75, 1.25
    # -> 0, 25, 75, 100 (cv2 INTER_LINEAR, half-pixel centres, edges clamped).
    frame = np.zeros((4, 4, 3), dtype=np.uint8)
    frame[:, 1] = 100
    crop, factor = sample_target(frame, (0, 0, 2, 2), 1.0, 4)
    np.testing.assert_array_equal(crop[0, :, 0], [0, 25, 75, 100])
    assert factor == 2.0


def test_sample_target_equals_literal_official_routine():
    rng = np.random.default_rng(1)
    frame = rng.integers(0, 256, size=(90, 120, 3), dtype=np.uint8)
    for _ in range(200):
        w, h = rng.uniform(2, 60, size=2)
        x, y = rng.uniform(-0.4 * w, 120 - 0.6 * w), rng.uniform(-0.4 * h, 90 - 0.6 * h)
        for factor, size in ((2.0, TEMPLATE_SIZE), (4.0, SEARCH_SIZE)):
            ours, rz = sample_target(frame, (x, y, w, h), factor, size)
            ref, ref_rz = official_sample_target(frame, (x, y, w, h), factor, size)
            np.testing.assert_array_equal(ours, ref)
            assert rz == ref_rz


def test_template_anno_by_hand():
    # side = ceil(sqrt(800) * 2) = 57, rz = 112/57; w*rz = 78.596, 56 - 39.298 -> 16;
    # h*rz = 39.298, 56 - 19.649 -> 36
    rz = TEMPLATE_SIZE / 57
    anno = template_anno((100, 50, 40, 20), rz, TEMPLATE_SIZE)
    assert anno.dtype == np.float32
    np.testing.assert_allclose(anno, [16 / 112, 36 / 112, 40 * rz / 112, 20 * rz / 112],
                               rtol=1e-6)
    # Truncation toward zero of a negative x1: side 41, w*rz = 275.90, 56 - 137.95 -> -81.
    anno = template_anno((0, 0, 101, 4), TEMPLATE_SIZE / 41, TEMPLATE_SIZE)
    assert anno[0] * 112 == pytest.approx(-81)


def test_template_anno_matches_fp32_official_arithmetic():
    rng = np.random.default_rng(2)
    for _ in range(2000):
        box = [float(v) for v in rng.uniform(0.5, 400, size=4)]
        rz = TEMPLATE_SIZE / crop_window(box, 2.0)[2]
        size = torch.tensor(box[2:]) * rz   # the official computes this on an fp32 tensor
        ref = torch.tensor([int(TEMPLATE_SIZE / 2 - size[0] / 2),
                            int(TEMPLATE_SIZE / 2 - size[1] / 2), size[0], size[1]])
        np.testing.assert_array_equal(template_anno(box, rz, TEMPLATE_SIZE),
                                      (ref / TEMPLATE_SIZE).numpy())


def test_map_box_back_by_hand():
    prev = (100.0, 200.0, 40.0, 20.0)          # centre (120, 210)
    side = crop_window(prev, 4.0)[2]            # ceil(sqrt(800) * 4) = 114
    assert side == 114
    rz = SEARCH_SIZE / side
    # The crop centre maps to the previous centre.
    assert map_box_back((0.5, 0.5, 0.25, 0.5), prev, rz, SEARCH_SIZE) == pytest.approx(
        (120 - 14.25, 210 - 28.5, 28.5, 57.0), abs=1e-4)
    # cx = 0.75 * 114 = 85.5 -> 85.5 + (120 - 57) = 148.5; w = 57 -> x = 120
    # cy = 0.25 * 114 = 28.5 -> 28.5 + (210 - 57) = 181.5; h = 28.5 -> y = 167.25
    assert map_box_back((0.75, 0.25, 0.5, 0.25), prev, rz, SEARCH_SIZE) == pytest.approx(
        (120.0, 167.25, 57.0, 28.5), abs=1e-4)


def test_clip_box_by_hand():
    assert clip_box((-5, -7, 30, 40), 100, 200) == (0, 0, 25, 33)
    assert clip_box((195, 95, 30, 40), 100, 200) == (190, 90, 10, 10)
    assert clip_box((50, 60, 2, 3), 100, 200) == (50, 60, 10, 10)
    assert clip_box((50, 60, -20, 30), 100, 200) == (50, 60, 10, 30)
    assert clip_box((-500, -500, 2000, 2000), 100, 200) == (0, 0, 200, 100)
    assert clip_box((10, 20, 30, 40), 100, 200, margin=0) == (10, 20, 30, 40)


@pytest.mark.parametrize('box, message', [
    ((1, 2, 3), 'four numbers'),
    ('abcd', 'four numbers'),
    ((float('nan'), 0, 5, 5), 'NaN or inf'),
    ((0, 0, float('inf'), 5), 'NaN or inf'),
    ((0, 0, 0, 5), 'non-positive'),
    ((0, 0, 5, -1), 'non-positive'),
    ((200, 10, 5, 5), 'outside'),
    ((-10, 10, 10, 5), 'outside'),
    ((10, 100, 5, 5), 'outside'),
    ((0, 0, 201, 50), 'larger than the 200x100 image'),
    ((-50, -50, 100, 101), 'larger than the 200x100 image'),
    ((0, 0, 30000, 30000), 'larger than the 200x100 image'),
])
def test_validate_box_rejects(box, message):
    with pytest.raises(ValueError, match=message):
        validate_box(box, 100, 200)


def test_validate_box_accepts_numbers():
    assert validate_box(np.array([1, 2, 3, 4]), 100, 200) == (1.0, 2.0, 3.0, 4.0)
    assert validate_box((-20, -10, 200, 100), 100, 200) == (-20.0, -10.0, 200.0, 100.0)
    with pytest.raises(ValueError, match='too small'):
        crop_window((0, 0, 1e-200, 1e-200), 2.0)
