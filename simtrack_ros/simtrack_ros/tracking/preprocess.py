"""Model inputs: ImageNet normalisation (exact CPU path) and a batched on-device crop.

Exact path: crops cut by :func:`~simtrack_ros.tracking.crop.sample_target` (``cv2.resize``),
stacked, uploaded as uint8 and normalised like the official ``Preprocessor``
(``(x / 255 - mean) / std``).

Device path: :func:`crop_on_device` cuts every target's window from one uploaded frame in a
single gather. It reproduces the official crop (zero padding, the last image row/column never
copied, bilinear sampling with half-pixel centres as ``cv2.INTER_LINEAR`` and
``F.interpolate(mode='bilinear', align_corners=False, antialias=False)``), rounds to uint8
levels and normalises. OpenCV interpolates uint8 in 11-bit fixed point, so the two paths
differ by at most :data:`DEVICE_CROP_TOLERANCE_LEVELS` pixel level, i.e. at most
``1 / 255 / min(std)`` = 0.0175 in normalised units.

Instead of building a zero-padded ``side`` x ``side`` canvas per target and calling
``F.interpolate`` on it, the device path gathers the four bilinear taps of each output pixel
straight from the frame: the same arithmetic, memory bounded by the output size (a canvas for
a large target on a 1280x720 frame can reach 3840 x 3840 pixels) and one kernel launch
sequence for all targets.
"""
from __future__ import annotations

from typing import Sequence, Tuple

import numpy as np
import torch

IMAGENET_MEAN: Tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: Tuple[float, float, float] = (0.229, 0.224, 0.225)
PIXEL_MAX = 255.0
#: Largest difference (uint8 levels) between :func:`crop_on_device` and the cv2 path.
DEVICE_CROP_TOLERANCE_LEVELS = 1


def stack_crops(crops: Sequence[np.ndarray]) -> torch.Tensor:
    """Stack ``H x W x 3`` uint8 crops into an ``N x 3 x H x W`` uint8 CPU tensor."""
    batch = np.ascontiguousarray(np.stack(crops, axis=0).transpose(0, 3, 1, 2))
    return torch.from_numpy(batch)


def normalize(images: torch.Tensor) -> torch.Tensor:
    """Pixel levels ``N x 3 x H x W`` (uint8 or float) to ImageNet-normalised float32."""
    pixels = images.float()
    mean = torch.tensor(IMAGENET_MEAN, device=pixels.device).view(1, -1, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=pixels.device).view(1, -1, 1, 1)
    return (pixels / PIXEL_MAX - mean) / std


def _axis_taps(starts: torch.Tensor, sides: torch.Tensor, output_size: int, size: int
               ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Bilinear source taps along one axis for every window.

    Returns, each ``N x output_size``: image indices of the lower and upper tap (clamped so
    they can be gathered), their validity (inside the image and not its last row/column) as
    float masks, and the weight of the upper tap.
    """
    dst = torch.arange(output_size, dtype=torch.float64, device=starts.device)
    last = (sides - 1)[:, None]
    src = ((dst + 0.5) * (sides / output_size)[:, None] - 0.5).clamp(min=0.0)
    lower = torch.minimum(src.floor(), last)
    weight = torch.where(lower >= last, torch.zeros_like(src), src - lower)
    upper = torch.minimum(lower + 1, last)
    taps = []
    for offset in (lower, upper):
        index = starts[:, None] + offset
        taps.append(index.clamp(0, size - 1).long())
        taps.append(((index >= 0) & (index < size - 1)).float())
    low_index, low_valid, up_index, up_valid = taps
    return low_index, up_index, low_valid, up_valid, weight.float()


def resize_windows(frame: torch.Tensor, windows: Sequence[Tuple[int, int, int]],
                   output_size: int) -> torch.Tensor:
    """Crop and resize square windows ``(x1, y1, side)`` of one frame, as pixel levels.

    ``frame`` is ``H x W x 3`` uint8 on any device; the result is ``N x 3 x S x S`` float32
    on the same device, rounded to integer levels 0..255.
    """
    if frame.dim() != 3 or frame.dtype != torch.uint8:
        raise ValueError(f'frame must be an H x W x C uint8 tensor, got {tuple(frame.shape)} '
                         f'{frame.dtype}')
    height, width, channels = frame.shape
    if not windows:
        return frame.new_zeros((0, channels, output_size, output_size), dtype=torch.float32)
    geometry = torch.tensor(windows, dtype=torch.float64, device=frame.device)
    x_lo, x_up, x_lo_ok, x_up_ok, x_w = _axis_taps(geometry[:, 0], geometry[:, 2],
                                                   output_size, width)
    y_lo, y_up, y_lo_ok, y_up_ok, y_w = _axis_taps(geometry[:, 1], geometry[:, 2],
                                                   output_size, height)
    image = frame.permute(2, 0, 1)

    def row(rows: torch.Tensor, rows_ok: torch.Tensor) -> torch.Tensor:
        left = image[:, rows[:, :, None], x_lo[:, None, :]].float() * x_lo_ok[:, None, :]
        right = image[:, rows[:, :, None], x_up[:, None, :]].float() * x_up_ok[:, None, :]
        x_weight = x_w[:, None, :]
        return (left * (1 - x_weight) + right * x_weight) * rows_ok[:, :, None]

    y_weight = y_w[:, :, None]
    levels = row(y_lo, y_lo_ok) * (1 - y_weight) + row(y_up, y_up_ok) * y_weight
    return levels.round().clamp(0, PIXEL_MAX).permute(1, 0, 2, 3).contiguous()


def crop_on_device(frame: torch.Tensor, windows: Sequence[Tuple[int, int, int]],
                   output_size: int) -> torch.Tensor:
    """Normalised ``N x 3 x S x S`` model input for all ``windows`` of one uploaded frame."""
    return normalize(resize_windows(frame, windows, output_size))
