"""CV metrics: formula judgements of tracking challenges (annotation source ``'cv'``).

Each metric compares the target (the pixels of its box) or the ring around it with the
sequence's template (its first frame and box). Frames are RGB uint8; boxes are ``(x, y, w, h)``
pixels. Boxes are clipped to the frame; a metric whose region is empty (for sharpness: under
``min_sharpness_side``) or flat is skipped: its class gets no flag and its measurement is left out.

Regions:
    target: the box, rounded to whole pixels and clipped to the frame.
    ring: the box grown on every side by ``ring_factor * (w + h) / 2`` (SiamFC's context
    margin for the default 0.5), clipped to the frame, minus the target.

Luma is Rec. 601 ``Y = 0.299 R + 0.587 G + 0.114 B`` (0-255).

Metrics (measurement names in quotes; thresholds are fields of :class:`CvOptions`):
    motion_blur: ``'sharpness_ratio'``. Both target crops (frame and template) are converted to
    luma and resized (area interpolation) to one common size, ``sharpness_size`` a side or the
    smaller crop's side where that is smaller, so neither is up-sampled. On each, the two terms
    of the Laplacian are measured apart: ``S_x = var(d2Y/dx2) / var(Y)`` and ``S_y`` likewise
    (kernel ``[1, -2, 1]``; dividing by ``var(Y)`` makes it blind to a gain or offset of the
    intensities: darker, brighter, haze). ``sharpness_ratio = min(S_x / S_x(template),
    S_y / S_y(template))``: a motion blur along one axis lowers its term, which sharp edges
    across the motion would hide in the full Laplacian. Flagged when below ``blur_ratio``.
    illumination_change: ``'frame_illumination_change' = |mean Y(frame) - mean Y(template
    frame)| / max(mean Y(template frame), 1)`` and ``'target_illumination_change'``, the same on
    the target and template regions. Flagged when either exceeds its threshold
    (``frame_illumination_change``, ``target_illumination_change``); judged on the frame alone
    when the target region is missing.
    low_contrast_object: ``'contrast'``, the mean CIE76 colour distance (CIELAB, L* 0-100) of
    the target's pixels from the ring's per-channel median colour (the background). Flagged
    when below ``low_contrast``.
    background_clutter: ``'colour_similarity'``, the Bhattacharyya coefficient (1 = identical)
    of the target's and the ring's HSV histograms (``histogram_bins``), and ``'texture_ratio'``,
    the ring's mean luma gradient magnitude (3x3 Sobel) over the target's. Flagged when the ring
    is both coloured like the target (``colour_similarity >= clutter_similarity``) and about as
    textured (``texture_ratio >= clutter_texture_ratio``): a plain ring of the target's colour
    is low contrast, not clutter; a busy ring of other colours does not compete with the target.
    scale_variation, low_resolution: OTB's rules of :mod:`simtrack_ros.data.dataset_labels` on
    the box (``'area_ratio'`` to the template box, ``'area'``), thresholds ``scale_ratio`` and
    ``min_area``.
"""
from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Dict, Optional, Sequence, Tuple

import cv2
import numpy as np

from simtrack_ros.data.annotations import CvResponse, Flag
from simtrack_ros.data.dataset_labels import (
    box_area, low_resolution, LOW_RESOLUTION_AREA, SCALE_RATIO, scale_variation)

#: Source name of every flag made here.
SOURCE = 'cv'
_LUMA = np.array([0.299, 0.587, 0.114])   # RGB weights
_FLAT = 1e-6   # intensity variance (or gradient) below which a region has nothing to measure
_Slices = Tuple[slice, slice]


@dataclass(frozen=True)
class CvOptions:
    """Region sizes and the threshold of each metric (see the module docstring)."""

    ring_factor: float = 0.5
    sharpness_size: int = 64
    min_sharpness_side: int = 8
    blur_ratio: float = 0.35
    frame_illumination_change: float = 0.3
    target_illumination_change: float = 0.4
    low_contrast: float = 10.0
    clutter_similarity: float = 0.8
    clutter_texture_ratio: float = 0.75
    histogram_bins: Tuple[int, int, int] = (12, 4, 4)   # hue, saturation, value
    scale_ratio: float = SCALE_RATIO
    min_area: float = LOW_RESOLUTION_AREA

    def __post_init__(self) -> None:
        for field in fields(self):
            value = getattr(self, field.name)
            numbers = np.atleast_1d(np.asarray(value, np.float64))
            if not np.all(np.isfinite(numbers)) or np.any(numbers <= 0):
                raise ValueError(f'CvOptions.{field.name} must be positive, got {value!r}')
        if self.min_sharpness_side < 3:
            raise ValueError('CvOptions.min_sharpness_side must be at least 3 (the kernel), '
                             f'got {self.min_sharpness_side}')
        if self.scale_ratio <= 1:
            raise ValueError(f'CvOptions.scale_ratio must be > 1, got {self.scale_ratio}')


@dataclass(frozen=True)
class CvJudgement:
    """Flags of the judged classes (source ``'cv'``) and the measurements behind them."""

    flags: Dict[str, Flag]
    measurements: Dict[str, float]


def _box_slices(box: Sequence[float], shape: Tuple[int, ...], grow: float = 0.0
                ) -> Optional[_Slices]:
    """Pixel slices of ``box`` grown by ``grow * (w + h) / 2`` a side, clipped; None if empty."""
    if box_area(box) is None:
        return None
    x, y, w, h = (float(v) for v in box)
    margin = grow * (w + h) / 2
    x1, y1 = max(round(x - margin), 0), max(round(y - margin), 0)
    x2, y2 = min(round(x + w + margin), shape[1]), min(round(y + h + margin), shape[0])
    if x2 <= x1 or y2 <= y1:
        return None
    return slice(y1, y2), slice(x1, x2)


def _luma(image: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)


def _mean_luma(image: np.ndarray) -> float:
    return float(np.dot(cv2.mean(image)[:3], _LUMA))


def _relative_change(value: float, reference: float) -> float:
    return abs(value - reference) / max(reference, 1.0)


def _sharpness(crop: np.ndarray, size: Tuple[int, int]) -> Optional[np.ndarray]:
    """``(S_x, S_y)`` of an RGB crop resized to ``size`` (width, height); None when flat."""
    small = cv2.resize(_luma(crop), size, interpolation=cv2.INTER_AREA).astype(np.float32)
    spread = float(small.var())
    if spread <= _FLAT:
        return None
    return np.array([cv2.Sobel(small, cv2.CV_32F, 2, 0, ksize=1).var(),
                     cv2.Sobel(small, cv2.CV_32F, 0, 2, ksize=1).var()]) / spread


def _check_frame(image: np.ndarray, name: str) -> None:
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim != 3 \
            or image.shape[2] != 3:
        raise ValueError(f'{name} must be an H x W x 3 uint8 RGB array, got '
                         f'{getattr(image, "dtype", type(image))} {getattr(image, "shape", "")}')


class CvJudge:
    """Judge one frame's target against the template with the formulas of this module."""

    def __init__(self, options: CvOptions = CvOptions()) -> None:
        self.options = options

    def judge(self, frame: np.ndarray, box: Sequence[float], template_frame: np.ndarray,
              template_box: Sequence[float]) -> CvJudgement:
        """Measure ``frame`` and its ``box`` against the template; flag the classes judged."""
        _check_frame(frame, 'frame')
        _check_frame(template_frame, 'template_frame')
        target = _box_slices(box, frame.shape)
        template = _box_slices(template_box, template_frame.shape)
        measured: Dict[str, float] = {}
        flags: Dict[str, bool] = {}
        self._box_rules(box, template_box, measured, flags)
        self._illumination(frame, target, template_frame, template, measured, flags)
        if target is not None and template is not None:
            self._blur(frame[target], template_frame[template], measured, flags)
        if target is not None:
            outer = _box_slices(box, frame.shape, self.options.ring_factor)
            self._ring_metrics(frame[outer], target, outer, measured, flags)
        return CvJudgement({name: Flag(value, SOURCE) for name, value in flags.items()},
                           measured)

    def _box_rules(self, box, template_box, measured, flags) -> None:
        """Apply OTB's low-resolution and scale-variation rules (dataset_labels)."""
        area, template_area = box_area(box), box_area(template_box)
        if area is None:
            return
        measured['area'] = area
        flags['low_resolution'] = low_resolution(box, self.options.min_area)
        if template_area is not None:
            measured['area_ratio'] = area / template_area
            flags['scale_variation'] = scale_variation(box, template_box,
                                                       self.options.scale_ratio)

    def _illumination(self, frame, target, template_frame, template, measured, flags) -> None:
        opts = self.options
        change = _relative_change(_mean_luma(frame), _mean_luma(template_frame))
        measured['frame_illumination_change'] = change
        flagged = change > opts.frame_illumination_change
        if target is not None and template is not None:
            change = _relative_change(_mean_luma(frame[target]),
                                      _mean_luma(template_frame[template]))
            measured['target_illumination_change'] = change
            flagged = flagged or change > opts.target_illumination_change
        flags['illumination_change'] = flagged

    def _blur(self, crop, template_crop, measured, flags) -> None:
        opts = self.options
        width = min(opts.sharpness_size, crop.shape[1], template_crop.shape[1])
        height = min(opts.sharpness_size, crop.shape[0], template_crop.shape[0])
        if min(width, height) < opts.min_sharpness_side:
            return
        reference = _sharpness(template_crop, (width, height))
        current = _sharpness(crop, (width, height))
        if reference is None or current is None or np.any(reference <= _FLAT):
            return
        ratio = float(np.min(current / reference))
        measured['sharpness_ratio'] = ratio
        flags['motion_blur'] = ratio < opts.blur_ratio

    def _ring_metrics(self, patch, target, outer, measured, flags) -> None:
        """Contrast and clutter of the target against its ring, both inside ``patch``."""
        opts = self.options
        inner = np.zeros(patch.shape[:2], bool)
        inner[target[0].start - outer[0].start:target[0].stop - outer[0].start,
              target[1].start - outer[1].start:target[1].stop - outer[1].start] = True
        ring = ~inner
        if not ring.any():
            return
        lab = cv2.cvtColor(patch.astype(np.float32) / 255.0, cv2.COLOR_RGB2Lab)
        background = np.median(lab[ring], axis=0)
        contrast = float(np.linalg.norm(lab[inner] - background, axis=1).mean())
        measured['contrast'] = contrast
        flags['low_contrast_object'] = contrast < opts.low_contrast

        hsv = cv2.cvtColor(patch, cv2.COLOR_RGB2HSV_FULL)
        similarity = float(np.sqrt(self._histogram(hsv, inner) * self._histogram(hsv, ring)).sum())
        measured['colour_similarity'] = similarity
        grey = _luma(patch).astype(np.float32)
        gradient = cv2.magnitude(cv2.Sobel(grey, cv2.CV_32F, 1, 0, ksize=3),
                                 cv2.Sobel(grey, cv2.CV_32F, 0, 1, ksize=3))
        target_texture = float(gradient[inner].mean())
        if target_texture <= _FLAT:
            return
        texture = float(gradient[ring].mean()) / target_texture
        measured['texture_ratio'] = texture
        flags['background_clutter'] = (similarity >= opts.clutter_similarity
                                       and texture >= opts.clutter_texture_ratio)

    def _histogram(self, hsv: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """Normalised HSV histogram of the pixels under ``mask``."""
        hist = cv2.calcHist([hsv], [0, 1, 2], mask.astype(np.uint8),
                            list(self.options.histogram_bins), [0, 256, 0, 256, 0, 256])
        return hist / float(hist.sum())


def cv_response(judgement: CvJudgement) -> CvResponse:
    """Return the record's ``cv_response``: ``{class: 0|1}`` for each class judged."""
    return {name: int(flag.flag) for name, flag in judgement.flags.items()}


__all__ = ['CvJudge', 'CvJudgement', 'CvOptions', 'SOURCE', 'cv_response']
