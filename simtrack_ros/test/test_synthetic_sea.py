"""The synthetic sea scene: determinism, a valid moving box, a target that stands out."""
from __future__ import annotations

import numpy as np
import pytest

from simtrack_ros.data.synthetic_sea import render_sea_frame

WIDTH, HEIGHT = 640, 480
TIMES = np.arange(0.0, 40.0, 0.5)


def _centre(box):
    x, y, w, h = box
    return np.array([x + w / 2, y + h / 2])


def test_frame_shape_and_type():
    frame, box = render_sea_frame(1.0, 320, 240, seed=3)
    assert frame.shape == (240, 320, 3) and frame.dtype == np.uint8
    assert frame.flags.c_contiguous
    assert len(box) == 4 and all(isinstance(v, float) for v in box)


def test_deterministic_for_time_and_seed():
    first, first_box = render_sea_frame(2.5, WIDTH, HEIGHT, seed=7)
    again, again_box = render_sea_frame(2.5, WIDTH, HEIGHT, seed=7)
    assert np.array_equal(first, again) and first_box == again_box
    other_seed, _ = render_sea_frame(2.5, WIDTH, HEIGHT, seed=8)
    other_time, _ = render_sea_frame(2.6, WIDTH, HEIGHT, seed=7)
    assert not np.array_equal(first, other_seed)
    assert not np.array_equal(first, other_time)


@pytest.mark.parametrize('seed', [0, 1, 2])
def test_box_inside_frame_with_a_usable_size(seed):
    for t in TIMES[::2]:
        x, y, w, h = render_sea_frame(float(t), WIDTH, HEIGHT, seed)[1]
        assert x >= 0 and y >= 0 and x + w <= WIDTH and y + h <= HEIGHT, (t, x, y, w, h)
        assert w >= 30 and h >= 12, (t, w, h)
        assert y > 0.35 * HEIGHT, 'the boat floats below the horizon'


def test_box_moves_smoothly():
    centres = np.array([_centre(render_sea_frame(float(t), WIDTH, HEIGHT)[1]) for t in TIMES])
    assert np.ptp(centres[:, 0]) > 0.3 * WIDTH, 'the boat crosses a good part of the frame'
    steps = np.linalg.norm(np.diff(centres, axis=0), axis=1)
    assert steps.max() < 0.1 * WIDTH, 'no jumps between frames half a second apart'
    assert np.count_nonzero(steps > 1.0) > 0.9 * len(steps), 'it keeps moving'


def test_waves_move():
    first, _ = render_sea_frame(0.0, WIDTH, HEIGHT)
    later, _ = render_sea_frame(0.2, WIDTH, HEIGHT)
    sea = slice(int(0.6 * HEIGHT), HEIGHT)
    difference = np.abs(first[sea].astype(int) - later[sea].astype(int))
    assert difference.mean() > 2.0
    assert first[sea].std() > 5.0, 'the water is textured, not flat'


@pytest.mark.parametrize('t', [0.0, 5.0, 11.0])
def test_target_pixels_differ_from_the_sea(t):
    frame, (x, y, w, h) = render_sea_frame(t, WIDTH, HEIGHT)
    image = frame.astype(float)
    inner = image[int(y + 0.2 * h):int(y + 0.8 * h), int(x + 0.2 * w):int(x + 0.8 * w)]
    below = image[int(y + h) + 5:int(y + 2 * h) + 5, int(x):int(x + w)]
    sea_colour = np.median(below.reshape(-1, 3), axis=0)
    distance = np.linalg.norm(inner - sea_colour, axis=2)
    assert np.mean(distance > 60) > 0.6, 'most of the target stands out from the water'


def test_rejects_tiny_frames():
    with pytest.raises(ValueError):
        render_sea_frame(0.0, 16, 16)
