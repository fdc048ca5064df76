"""Normalisation, and the on-device crop against the OpenCV path, bit for bit (CPU tensors)."""
from __future__ import annotations

from typing import List, Tuple

import numpy as np
import pytest
import torch

from simtrack_ros.model.config import CONFIG_NAMES, get_config
from simtrack_ros.tracking.crop import crop_and_resize
from simtrack_ros.tracking.preprocess import (
    crop_on_device, IMAGENET_MEAN, IMAGENET_STD, normalize, resize_windows, stack_crops)

#: Crop sizes of every model config (template, search), plus odd and tiny ones.
CONFIG_SIZES = sorted({size for name in CONFIG_NAMES
                       for size in (get_config(name).template_size, get_config(name).search_size)})
OUTPUT_SIZES = CONFIG_SIZES + [1, 2, 5, 17, 33]
#: Frame shapes: odd, tiny, one pixel wide or tall.
FRAME_SHAPES = [(48, 64), (37, 91), (1, 1), (1, 23), (19, 1), (2, 2), (3, 7)]
Window = Tuple[int, int, int]


def cv2_crops(frame: np.ndarray, windows: List[Window], output_size: int) -> torch.Tensor:
    return stack_crops([crop_and_resize(frame, window, output_size) for window in windows])


def sides_for(output_size: int, rng: np.random.Generator) -> List[int]:
    """Up- and downscaling, exact 2x (OpenCV's INTER_AREA switch), 1x and 1-pixel windows."""
    fixed = {1, 2, 3, output_size, 2 * output_size, output_size + 1,
             max(1, output_size - 1), max(1, output_size // 2), 3 * output_size}
    return sorted(fixed | {int(s) for s in rng.integers(1, 4 * output_size + 8, size=4)})


def windows_for(height: int, width: int, sides: List[int], rng: np.random.Generator
                ) -> List[Window]:
    """Windows crossing every border and corner, inside, spanning and fully outside.

    Each placement takes the next side in turn (a random rotation per frame), plus one
    window of every side at a random place.
    """
    def lefts(side: int) -> List[int]:
        return [-side // 2, max(0, (width - side) // 2), width - side // 2, -side - 3,
                width + 2, -3]

    def tops(side: int) -> List[int]:
        return [-side // 2, max(0, (height - side) // 2), height - side // 2, -side - 1,
                height + 4, -2]

    turn = int(rng.integers(len(sides)))
    windows = []
    for i in range(6):
        for j in range(6):
            side = sides[(turn + 6 * i + j) % len(sides)]
            windows.append((lefts(side)[i], tops(side)[j], side))
    windows += [(int(rng.integers(-side - 2, width + 2)), int(rng.integers(-side - 2, height + 2)),
                 side) for side in sides]
    return windows


def test_normalize_matches_official_formula():
    pixels = torch.arange(0, 256, dtype=torch.uint8).repeat(3, 4, 1).unsqueeze(0)
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    torch.testing.assert_close(normalize(pixels), ((pixels.float() / 255.0) - mean) / std,
                               rtol=0, atol=0)


def test_config_sizes_are_covered():
    assert {112, 224} <= set(CONFIG_SIZES)


@pytest.mark.parametrize('output_size', OUTPUT_SIZES)
def test_device_crop_equals_cv2_bit_for_bit(output_size):
    rng = np.random.default_rng(output_size)
    checked = 0
    for height, width in FRAME_SHAPES + [tuple(int(v) for v in rng.integers(1, 160, size=2))]:
        frame = rng.integers(0, 256, size=(height, width, 3), dtype=np.uint8)
        windows = windows_for(height, width, sides_for(output_size, rng), rng)
        expected = cv2_crops(frame, windows, output_size)
        got = resize_windows(torch.from_numpy(frame), windows, output_size)
        assert got.dtype == torch.uint8 and got.shape == expected.shape
        mismatched = [windows[i] for i in
                      torch.nonzero((got != expected).flatten(1).any(1)).flatten().tolist()]
        assert not mismatched, f'{height}x{width} frame, output {output_size}: {mismatched[:5]}'
        checked += len(windows)
    assert checked > 300


def test_device_crop_gives_the_cpu_paths_model_input():
    rng = np.random.default_rng(11)
    frame = rng.integers(0, 256, size=(72, 128, 3), dtype=np.uint8)
    windows = [(-20, -9, 161), (50, 30, 56), (100, 60, 448), (3, 4, 224), (10, 10, 75)]
    for size in CONFIG_SIZES:
        torch.testing.assert_close(crop_on_device(torch.from_numpy(frame), windows, size),
                                   normalize(cv2_crops(frame, windows, size)), rtol=0, atol=0)


def test_device_crop_of_a_real_image_with_smooth_content():
    """Gradients and flat areas (random noise rarely hits every rounding case)."""
    ys, xs = np.mgrid[0:120, 0:160]
    frame = np.stack([(xs * 255) // 159, (ys * 255) // 119, (xs + ys) % 256], -1).astype(np.uint8)
    frame[40:80, 60:100] = 200
    windows = [(x, y, side) for side in (37, 112, 150, 224, 333) for x, y in
               ((-30, -30), (70, 40), (140, 100), (5, 90))]
    for size in CONFIG_SIZES:
        assert torch.equal(resize_windows(torch.from_numpy(frame), windows, size),
                           cv2_crops(frame, windows, size))


def test_device_crop_rejects_bad_frames_and_handles_no_windows():
    frame = torch.zeros(10, 10, 3, dtype=torch.uint8)
    assert resize_windows(frame, [], 56).shape == (0, 3, 56, 56)
    with pytest.raises(ValueError, match='uint8'):
        resize_windows(frame.float(), [(0, 0, 4)], 56)


@pytest.mark.skipif(not torch.cuda.is_available(), reason='needs a CUDA device')
def test_device_crop_on_cuda_equals_cv2():
    rng = np.random.default_rng(5)
    frame = rng.integers(0, 256, size=(72, 128, 3), dtype=np.uint8)
    for size in CONFIG_SIZES + [17]:
        windows = windows_for(72, 128, sides_for(size, rng), rng)
        on_cuda = resize_windows(torch.from_numpy(frame).cuda(), windows, size).cpu()
        assert torch.equal(on_cuda, cv2_crops(frame, windows, size))
