"""Free challenge labels from a dataset's own annotations (source ``'dataset'``).

Visibility, from the GOT-10k/MVTD label files (a class left out was not judged):

==========================================  =====================================  ===============
frame's labels                              flags                                  visible ratio
==========================================  =====================================  ===============
absent = 1 (fully occluded or out of view)  occlusion = 1                          0
cut_by_image = 1                            partial_visibility = 1                 cover/8
cut_by_image = 0, cover < 8                 partial_visibility = 0, occlusion = 1  cover/8
cut_by_image = 0 or no file, cover = 8      partial_visibility = 0, occlusion = 0  1
cut_by_image = 0, no cover                  partial_visibility = 0                 None
no cut_by_image file, cover < 8             none (cut or occluded: cannot tell)    cover/8
otherwise                                   none                                   cover/8 or None
==========================================  =====================================  ===============

A cut frame's occlusion is not judged: its cover may be low from the cut alone. From the boxes,
OTB's rules (Wu et al., CVPR 2013) for every present frame with a valid box:
``scale_variation`` when the box area over the first valid box's area is outside
``[1 / scale_ratio, scale_ratio]`` (default 2), ``low_resolution`` when the box area is under
``min_area`` pixels (default 400). Boxes are ``(x, y, w, h)``.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Dict, List, Optional, Sequence as Seq, Tuple

import numpy as np

from simtrack_ros.data.annotations import Flag
from simtrack_ros.data.sequences import COVER_MAX, Sequence

SOURCE = 'dataset'
#: OTB's scale-variation threshold: area ratio outside [1/2, 2].
SCALE_RATIO = 2.0
#: OTB's low-resolution threshold: box area under 400 pixels.
LOW_RESOLUTION_AREA = 400.0


@dataclasses.dataclass(frozen=True)
class FrameLabels:
    """One frame's dataset flags and visible ratio (None when the dataset does not say)."""

    flags: Dict[str, Flag]
    visible_ratio: Optional[float]


def box_area(box: Seq[float]) -> Optional[float]:
    """Return w * h of an ``(x, y, w, h)`` box, or None for a non-finite or empty box."""
    x, y, w, h = (float(v) for v in box)
    if not all(math.isfinite(v) for v in (x, y, w, h)) or w <= 0 or h <= 0:
        return None
    return w * h


def scale_variation(box: Seq[float], first_box: Seq[float],
                    scale_ratio: float = SCALE_RATIO) -> bool:
    """OTB scale variation: area(box) / area(first_box) outside [1/scale_ratio, scale_ratio]."""
    if scale_ratio <= 1:
        raise ValueError(f'scale_ratio must be > 1, got {scale_ratio}')
    area, first = box_area(box), box_area(first_box)
    if area is None or first is None:
        raise ValueError(f'scale_variation needs two valid boxes, got {box} and {first_box}')
    return not 1 / scale_ratio <= area / first <= scale_ratio


def low_resolution(box: Seq[float], min_area: float = LOW_RESOLUTION_AREA) -> bool:
    """OTB low resolution: the box covers fewer than ``min_area`` pixels."""
    area = box_area(box)
    if area is None:
        raise ValueError(f'low_resolution needs a valid box, got {box}')
    return area < min_area


def visibility_labels(absent: Optional[bool], cut_by_image: Optional[bool],
                      cover: Optional[int]) -> FrameLabels:
    """Apply the visibility table of the module docstring; None = the dataset has no such file."""
    if cover is not None and not 0 <= cover <= COVER_MAX:
        raise ValueError(f'cover must be in 0..{COVER_MAX}, got {cover}')
    if absent:
        return FrameLabels({'occlusion': Flag(True, SOURCE)}, 0.0)
    ratio = None if cover is None else cover / COVER_MAX
    flags: Dict[str, Flag] = {}
    if cut_by_image is not None:
        flags['partial_visibility'] = Flag(bool(cut_by_image), SOURCE)
    if cover is not None and not cut_by_image:
        if cover == COVER_MAX:
            flags['partial_visibility'] = Flag(False, SOURCE)
            flags['occlusion'] = Flag(False, SOURCE)
        elif cut_by_image is not None:
            flags['occlusion'] = Flag(True, SOURCE)
    return FrameLabels(flags, ratio)


def sequence_labels(sequence: Sequence, *, scale_ratio: float = SCALE_RATIO,
                    min_area: float = LOW_RESOLUTION_AREA) -> List[FrameLabels]:
    """Return the dataset labels of every frame of ``sequence``: visibility plus OTB's rules."""
    count = len(sequence)
    absent = _column(sequence.absent, count)
    cut = _column(sequence.cut_by_image, count)
    cover = _column(sequence.cover, count)
    present = [not absent[i] and box_area(sequence.boxes[i]) is not None for i in range(count)]
    first = next((sequence.boxes[i] for i in range(count) if present[i]), None)
    out = []
    for i in range(count):
        labels = visibility_labels(absent[i], cut[i], cover[i])
        if present[i]:
            box = sequence.boxes[i]
            labels.flags['scale_variation'] = Flag(scale_variation(box, first, scale_ratio),
                                                   SOURCE)
            labels.flags['low_resolution'] = Flag(low_resolution(box, min_area), SOURCE)
        out.append(labels)
    return out


def _column(values: Optional[np.ndarray], count: int) -> Tuple[Optional[int], ...]:
    if values is None:
        return (None,) * count
    return tuple(int(v) for v in values)
