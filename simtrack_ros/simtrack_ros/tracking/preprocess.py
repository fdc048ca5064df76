"""Model inputs: ImageNet normalisation and a batched on-device crop equal to OpenCV's.

CPU path: crops cut by :func:`~simtrack_ros.tracking.crop.crop_and_resize` (zero-padded window,
``cv2.resize`` INTER_LINEAR), stacked, uploaded as uint8 and normalised like the official
``Preprocessor`` (``(x / 255 - mean) / std``).

Device path: :func:`crop_on_device` cuts every target's window from one uploaded frame and
gives the same uint8 pixels as the CPU path, bit for bit, hence the same model input. It
emulates OpenCV's uint8 INTER_LINEAR in integer tensor arithmetic, on any torch device:

* per axis, ``scale = 1 / (out / side)`` (double), source position
  ``f = float32((d + 0.5) * scale - 0.5)``, tap ``s = floor(f)``, ``f -= s``; weights
  ``round_half_even({1 - f, f} * 2048)`` (11 bits);
* horizontally, a tap left of the window or at/after its last column becomes the single
  tap ``s`` clamped to the window, weights ``(2048, 0)``; vertically the weights stay and
  both rows are clamped to the window;
* horizontal pass ``H = P[s] * a0 + P[s + 1] * a1`` (int32); vertical pass
  ``(((H0 >> 4) * b0 >> 16) + ((H1 >> 4) * b1 >> 16) + 2) >> 2`` (OpenCV uses this formula
  for the vector body and the scalar tail of a uint8 row alike).

OpenCV replaces an exact 2x downscale by INTER_AREA (``(p00 + p01 + p10 + p11 + 2) >> 2``) and
a same-size resize by a copy: the formulas above give both results exactly (weights 1024/1024
at taps ``2d, 2d + 1``; weights 2048/0 at tap ``d``), so no case needs a branch. Pixels of the
zero padding (outside the frame, and the frame's last row/column, which the official crop
never copies: :func:`~simtrack_ros.tracking.crop.valid_extent`) enter with weight 0.

No ``side`` x ``side`` canvas is built: the four taps of each output pixel are gathered
straight from the frame, so memory is bounded by the output size (a canvas for a large
target on a 1280x720 frame can reach 3840 x 3840 pixels) and all targets share one sequence
of kernel launches.
"""
from __future__ import annotations

from typing import Sequence, Tuple

import numpy as np
import torch

IMAGENET_MEAN: Tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: Tuple[float, float, float] = (0.229, 0.224, 0.225)
PIXEL_MAX = 255.0
#: OpenCV's fixed-point interpolation weight scale (``INTER_RESIZE_COEF_SCALE``, 11 bits).
COEF_SCALE = 2048


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


def _axis_taps(starts: Sequence[int], sides: Sequence[int], output_size: int, size: int,
               single_tap_at_edges: bool) -> Tuple[torch.Tensor, torch.Tensor]:
    """Return the two INTER_LINEAR taps along one axis for every window (CPU tensors).

    Frame indices (clamped into the frame so that they can be gathered) and OpenCV's
    weights, both ``N x output_size x 2`` int32; a tap on zero padding gets weight 0.
    ``single_tap_at_edges`` applies OpenCV's horizontal rule (a single tap where the
    position leaves the window); the vertical pass only clamps the rows.
    """
    scale = torch.tensor([1.0 / (output_size / side) for side in sides],
                         dtype=torch.float64)[:, None]
    dst = torch.arange(output_size, dtype=torch.float64)
    position = ((dst + 0.5) * scale - 0.5).float()
    lower = position.floor()
    frac = position - lower
    lower = lower.long()
    last = torch.tensor(sides)[:, None] - 1
    if single_tap_at_edges:
        frac = torch.where((lower < 0) | (lower >= last), torch.zeros_like(frac), frac)
        lower = torch.minimum(lower.clamp(min=0), last)
    weights = torch.stack(((1 - frac) * COEF_SCALE, frac * COEF_SCALE), dim=-1).round().int()
    taps = torch.minimum(torch.stack((lower, lower + 1), dim=-1).clamp(min=0), last[..., None])
    index = taps + torch.tensor(starts)[:, None, None]
    copied = (index >= 0) & (index < size - 1)
    return index.clamp(0, size - 1).int(), weights * copied


def resize_windows(frame: torch.Tensor, windows: Sequence[Tuple[int, int, int]],
                   output_size: int) -> torch.Tensor:
    """Crop and resize square windows ``(x1, y1, side)`` of one frame, as OpenCV does.

    ``frame`` is ``H x W x C`` uint8 on any device; the result is ``N x C x S x S`` uint8 on
    the same device, equal to ``crop_and_resize`` of each window. The tap tables
    (``N x S x 2``) are computed on the CPU and uploaded in one copy.
    """
    if frame.dim() != 3 or frame.dtype != torch.uint8:
        raise ValueError(f'frame must be an H x W x C uint8 tensor, got {tuple(frame.shape)} '
                         f'{frame.dtype}')
    height, width, channels = frame.shape
    if not windows:
        return frame.new_zeros((0, channels, output_size, output_size))
    x1s, y1s, sides = zip(*windows)
    tables = torch.stack(_axis_taps(y1s, sides, output_size, height, False)
                         + _axis_taps(x1s, sides, output_size, width, True))
    rows, row_weights, cols, col_weights = tables.to(frame.device).unbind(0)
    # The four taps of every output pixel: N x S (rows) x 2 (row taps) x 2 (column taps) x
    # S (columns) x C.
    flat_index = (rows * width)[:, :, :, None, None] + cols.transpose(1, 2)[:, None, None]
    taps = frame.reshape(-1, channels).index_select(0, flat_index.reshape(-1))
    taps = taps.view(flat_index.shape + (channels,))
    left, right = col_weights.transpose(1, 2)[:, None, None, :, :, None].unbind(3)
    horizontal = taps[:, :, :, 0] * left + taps[:, :, :, 1] * right   # int32
    vertical = ((horizontal >> 4) * row_weights[:, :, :, None, None]) >> 16
    levels = (vertical[:, :, 0] + vertical[:, :, 1] + 2) >> 2
    return levels.clamp(0, int(PIXEL_MAX)).to(torch.uint8).permute(0, 3, 1, 2).contiguous()


def crop_on_device(frame: torch.Tensor, windows: Sequence[Tuple[int, int, int]],
                   output_size: int) -> torch.Tensor:
    """Normalised ``N x 3 x S x S`` model input for all ``windows`` of one uploaded frame."""
    return normalize(resize_windows(frame, windows, output_size))
