"""Sprites: anti-aliased polygons rasterised into a small premultiplied RGBA patch.

Synthetic scenes draw every object (vessel, wave crest, harbour) as a sprite placed in image
pixels, so its coverage (``alpha``) is known exactly for labels, and blur or fog act on the
object alone before it is composited over the planar float canvas (3 x H x W, RGB 0-255).
"""
from __future__ import annotations

from dataclasses import dataclass
import math
from typing import Optional, Sequence, Tuple

import cv2
import numpy as np

from simtrack_ros.data.synthetic_sea import Colour, fill_polygon

#: Pixel rectangle ``(x0, y0, x1, y1)``, x1 and y1 exclusive.
Rect = Tuple[int, int, int, int]


def intersect(a: Rect, b: Rect) -> Optional[Rect]:
    """Overlap of two rectangles, or None when they do not overlap."""
    x0, y0 = max(a[0], b[0]), max(a[1], b[1])
    x1, y1 = min(a[2], b[2]), min(a[3], b[3])
    return (x0, y0, x1, y1) if x0 < x1 and y0 < y1 else None


@dataclass(frozen=True)
class Sprite:
    """A patch at image offset ``(x0, y0)``: premultiplied colour (3 x h x w) and alpha (h x w)."""

    x0: int
    y0: int
    colour: np.ndarray
    alpha: np.ndarray

    @property
    def rect(self) -> Rect:
        height, width = self.alpha.shape
        return self.x0, self.y0, self.x0 + width, self.y0 + height

    def alpha_in(self, rect: Rect) -> np.ndarray:
        """Coverage over ``rect`` (zero where the sprite does not reach)."""
        out = np.zeros((rect[3] - rect[1], rect[2] - rect[0]), np.float32)
        common = intersect(self.rect, rect)
        if common is not None:
            out[_local(common, rect)] = self.alpha[_local(common, self.rect)]
        return out

    def blurred(self, dx: float, dy: float) -> 'Sprite':
        """Motion-blurred along ``(dx, dy)`` pixels (the motion during the exposure)."""
        kernel = line_kernel(dx, dy)
        if kernel is None:
            return self
        pad = kernel.shape[0] // 2
        planes = [cv2.filter2D(np.pad(plane, pad), -1, kernel, borderType=cv2.BORDER_CONSTANT)
                  for plane in (*self.colour, self.alpha)]
        return Sprite(self.x0 - pad, self.y0 - pad, np.stack(planes[:3]), planes[3])

    def fogged(self, colour: Colour, amount: float) -> 'Sprite':
        """Seen through fog of opacity ``amount`` and colour ``colour``."""
        if amount <= 0:
            return self
        fog = np.asarray(colour, np.float32)[:, None, None] * self.alpha
        return Sprite(self.x0, self.y0, self.colour + (fog - self.colour) * amount, self.alpha)

    def composite(self, canvas: np.ndarray) -> None:
        """Blend over the planar canvas (3 x H x W) where they overlap."""
        frame = (0, 0, canvas.shape[2], canvas.shape[1])
        common = intersect(self.rect, frame)
        if common is None:
            return
        mine = _local(common, self.rect)
        target = canvas[(slice(None),) + _local(common, frame)]
        target *= 1.0 - self.alpha[mine]
        target += self.colour[(slice(None),) + mine]


def _local(rect: Rect, frame: Rect) -> Tuple[slice, slice]:
    """Row and column slices of ``rect`` inside an array covering ``frame``."""
    return (slice(rect[1] - frame[1], rect[3] - frame[1]),
            slice(rect[0] - frame[0], rect[2] - frame[0]))


def rasterise(polygons: Sequence[np.ndarray], colours: Sequence[Colour],
              bounds: Optional[Rect] = None, opacity: float = 1.0) -> Optional[Sprite]:
    """Fill the polygons (K x 2 image pixels) in order, later ones on top.

    ``bounds`` limits the patch (e.g. the image plus a margin); None keeps all of it (a
    target's full extent, also outside the image). None when nothing is left to draw.
    """
    points = np.concatenate([np.asarray(p, np.float64).reshape(-1, 2) for p in polygons])
    rect = (math.floor(points[:, 0].min()) - 1, math.floor(points[:, 1].min()) - 1,
            math.ceil(points[:, 0].max()) + 2, math.ceil(points[:, 1].max()) + 2)
    if bounds is not None:
        rect = intersect(rect, bounds)
        if rect is None:
            return None
    width, height = rect[2] - rect[0], rect[3] - rect[1]
    patch = np.zeros((height, width, 3), np.uint8)
    mask = np.zeros((height, width), np.uint8)
    offset = np.array(rect[:2], np.float64)
    for polygon, colour in zip(polygons, colours):
        local = np.asarray(polygon, np.float64) - offset
        fill_polygon(patch, local, tuple(float(c) for c in colour))
        fill_polygon(mask, local, 255)
    alpha = mask.astype(np.float32) * (opacity / 255.0)
    colour = patch.transpose(2, 0, 1).astype(np.float32) * opacity
    return Sprite(rect[0], rect[1], colour, alpha)


def line_kernel(dx: float, dy: float) -> Optional[np.ndarray]:
    """Normalised kernel of a straight motion of ``(dx, dy)`` pixels; None under 1.5 pixels."""
    length = math.hypot(dx, dy)
    if length < 1.5:
        return None
    radius = math.ceil(max(abs(dx), abs(dy)) / 2.0) + 1
    size = 2 * radius + 1
    samples = max(int(math.ceil(length * 2)), 2)
    steps = np.linspace(-0.5, 0.5, samples)
    kernel = np.zeros((size, size), np.float32)
    # Splat evenly spaced points of the path bilinearly: sub-pixel exact, any direction.
    for x, y in zip(radius + steps * dx, radius + steps * dy):
        x0, y0 = int(math.floor(x)), int(math.floor(y))
        fx, fy = x - x0, y - y0
        kernel[y0, x0] += (1 - fx) * (1 - fy)
        kernel[y0, x0 + 1] += fx * (1 - fy)
        kernel[y0 + 1, x0] += (1 - fx) * fy
        kernel[y0 + 1, x0 + 1] += fx * fy
    return kernel / kernel.sum()


def blur_canvas(canvas: np.ndarray, dx: float, dy: float) -> None:
    """Motion-blur the whole planar canvas in place along ``(dx, dy)`` pixels."""
    kernel = line_kernel(dx, dy)
    if kernel is not None:
        for plane in canvas:
            cv2.filter2D(plane, -1, kernel, dst=plane, borderType=cv2.BORDER_REPLICATE)


__all__ = ['Rect', 'Sprite', 'blur_canvas', 'intersect', 'line_kernel', 'rasterise']
