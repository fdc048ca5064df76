"""Normalisation and the on-device crop against the exact OpenCV path."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from simtrack_ros.tracking.crop import crop_and_resize
from simtrack_ros.tracking.preprocess import (
    crop_on_device, DEVICE_CROP_TOLERANCE_LEVELS, IMAGENET_MEAN, IMAGENET_STD, normalize,
    resize_windows, stack_crops)

OUTPUT_SIZE = 56
NORMALISED_TOLERANCE = DEVICE_CROP_TOLERANCE_LEVELS / 255 / min(IMAGENET_STD) + 1e-6


def windows_for(height: int, width: int):
    """Windows at every border, inside, outside, tiny, huge and at exact scale."""
    return [
        (-7, -5, 30), (width - 20, height - 15, 33), (-10, height - 8, 25),
        (width - 9, -12, 40), (5, 6, 20), (1, 1, OUTPUT_SIZE), (width + 5, 2, 10),
        (3, 4, 1), (2, 2, 2), (-300, -250, 700), (width - 1, height - 1, 3),
    ]


def cv2_levels(frame, windows):
    return stack_crops([crop_and_resize(frame, w, OUTPUT_SIZE) for w in windows]).float()


def test_normalize_matches_official_formula():
    pixels = torch.arange(0, 256, dtype=torch.uint8).repeat(3, 4, 1).unsqueeze(0)
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    torch.testing.assert_close(normalize(pixels), ((pixels.float() / 255.0) - mean) / std,
                               rtol=0, atol=0)


def test_device_crop_matches_cv2_within_one_level():
    rng = np.random.default_rng(3)
    for height, width in ((48, 64), (37, 91)):
        frame = rng.integers(0, 256, size=(height, width, 3), dtype=np.uint8)
        windows = windows_for(height, width)
        ref = cv2_levels(frame, windows)
        got = resize_windows(torch.from_numpy(frame), windows, OUTPUT_SIZE)
        assert got.shape == ref.shape
        assert (got - ref).abs().max().item() <= DEVICE_CROP_TOLERANCE_LEVELS
        normalised = crop_on_device(torch.from_numpy(frame), windows, OUTPUT_SIZE)
        assert (normalised - normalize(ref)).abs().max().item() <= NORMALISED_TOLERANCE


def test_device_crop_exact_at_unit_scale_and_padding():
    frame = np.random.default_rng(4).integers(0, 256, size=(40, 50, 3), dtype=np.uint8)
    windows = [(-10, -10, OUTPUT_SIZE), (0, 0, OUTPUT_SIZE), (20, 10, OUTPUT_SIZE)]
    torch.testing.assert_close(resize_windows(torch.from_numpy(frame), windows, OUTPUT_SIZE),
                               cv2_levels(frame, windows), rtol=0, atol=0)


def test_device_crop_rejects_bad_frames_and_handles_no_windows():
    frame = torch.zeros(10, 10, 3, dtype=torch.uint8)
    assert resize_windows(frame, [], OUTPUT_SIZE).shape == (0, 3, OUTPUT_SIZE, OUTPUT_SIZE)
    with pytest.raises(ValueError, match='uint8'):
        resize_windows(frame.float(), [(0, 0, 4)], OUTPUT_SIZE)


@pytest.mark.skipif(not torch.cuda.is_available(), reason='needs a CUDA device')
def test_device_crop_on_cuda_matches_cpu():
    rng = np.random.default_rng(5)
    frame = rng.integers(0, 256, size=(72, 128, 3), dtype=np.uint8)
    windows = windows_for(72, 128)
    on_cuda = resize_windows(torch.from_numpy(frame).cuda(), windows, OUTPUT_SIZE).cpu()
    assert (on_cuda - cv2_levels(frame, windows)).abs().max().item() <= \
        DEVICE_CROP_TOLERANCE_LEVELS
    assert (on_cuda - resize_windows(torch.from_numpy(frame), windows, OUTPUT_SIZE)
            ).abs().max().item() <= DEVICE_CROP_TOLERANCE_LEVELS
