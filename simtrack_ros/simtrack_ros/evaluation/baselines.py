"""OpenCV's classical single-object trackers as evaluation baselines.

Which trackers exist depends on the OpenCV build: ``opencv-python-headless`` has MIL only
(its DaSiamRPN, Nano and Vit trackers need model files), ``opencv-contrib-python-headless``
adds CSRT and KCF, and, where the build still has the ``cv2.legacy`` module, MedianFlow,
MOSSE and TLD (its Boosting tracker is left out: it crashes the process). A tracker is looked
up as ``cv2.Tracker<Name>_create``, then as ``cv2.legacy.Tracker<Name>_create``. Frames are
RGB (as :meth:`Sequence.frame` reads them) and are given to OpenCV as BGR. When OpenCV
reports a failed update, the previous box is kept (one-pass evaluation needs a box on every
frame). OpenCV's random generator is seeded at every initialisation (MIL and TLD draw random
samples), so each sequence's result is the same whatever ran before it in the process.
"""
from __future__ import annotations

import math
from typing import Any, Callable, Dict, Optional, Sequence, Tuple

import cv2
import numpy as np

Box = Tuple[float, float, float, float]
#: OpenCV's RNG is seeded with this at every initialisation, so a run does not depend on
#: what ran before in the process.
RNG_SEED = 0

#: Baselines that need no model file: name -> OpenCV class name (``Tracker<Name>``).
BASELINES: Dict[str, str] = {
    'csrt': 'CSRT',
    'kcf': 'KCF',
    'mil': 'MIL',
    'mosse': 'MOSSE',
    'medianflow': 'MedianFlow',
    'tld': 'TLD',
}
#: OpenCV trackers left out: they need model files that OpenCV does not ship.
NEEDS_MODEL_FILES: Dict[str, str] = {
    'dasiamrpn': 'DaSiamRPN', 'nano': 'Nano', 'vit': 'Vit', 'goturn': 'GOTURN'}
#: OpenCV trackers left out because they do not work, with the reason.
BROKEN: Dict[str, Tuple[str, str]] = {
    'boosting': ('Boosting', 'cv2.legacy.TrackerBoosting crashes the process (segmentation '
                             'fault in update) on 2 of 3 synthetic sequences, OpenCV 5.0.0')}


def _factory(class_name: str) -> Tuple[Optional[Callable[[], Any]], bool]:
    """(create function, legacy API) of ``Tracker<class_name>``; (None, False) if missing."""
    create = getattr(cv2, f'Tracker{class_name}_create', None)
    if create is not None:
        return create, False
    legacy = getattr(cv2, 'legacy', None)
    create = getattr(legacy, f'Tracker{class_name}_create', None) if legacy else None
    return create, create is not None


def available_baselines() -> Tuple[str, ...]:
    """Names of :data:`BASELINES` that this OpenCV build offers, in table order."""
    return tuple(name for name, cls in BASELINES.items() if _factory(cls)[0] is not None)


def unavailable_baselines() -> Dict[str, str]:
    """Every OpenCV tracker that cannot run here, with the reason."""
    reasons = {name: f'not in this OpenCV build ({cv2.__version__}); '
                     'pip install opencv-contrib-python-headless'
               for name, cls in BASELINES.items() if _factory(cls)[0] is None}
    reasons.update({name: f'cv2.Tracker{cls} needs model files that OpenCV does not ship'
                    for name, cls in NEEDS_MODEL_FILES.items()
                    if hasattr(cv2, f'Tracker{cls}_create')})
    reasons.update({name: reason for name, (cls, reason) in BROKEN.items()
                    if _factory(cls)[0] is not None})
    return reasons


def parse_baselines(spec: str) -> Tuple[str, ...]:
    """``'csrt,kcf'``, ``'all'`` (every available one) or ``'none'`` -> baseline names.

    ValueError for an unknown name or one this OpenCV build lacks (with the reason).
    """
    spec = spec.strip().lower()
    if spec in ('', 'none'):
        return ()
    if spec == 'all':
        return available_baselines()
    names = tuple(dict.fromkeys(part.strip() for part in spec.split(',') if part.strip()))
    missing = unavailable_baselines()
    for name in names:
        if name in missing:
            raise ValueError(f'baseline {name!r}: {missing[name]}')
        if name not in BASELINES:
            raise ValueError(f'unknown baseline {name!r}; known: {", ".join(BASELINES)}')
    return names


def left_out_baselines(spec: str) -> Dict[str, str]:
    """Return the baselines ``spec`` leaves out for this OpenCV build (only ``'all'`` does)."""
    return unavailable_baselines() if spec.strip().lower() == 'all' else {}


class OpenCVTracker:
    """One OpenCV tracker behind ``initialize(frame, box)`` / ``track(frame) -> box``."""

    def __init__(self, name: str) -> None:
        if name not in BASELINES:
            raise ValueError(f'unknown baseline {name!r}; known: {", ".join(BASELINES)}')
        create, self.legacy = _factory(BASELINES[name])
        if create is None:
            raise ValueError(f'baseline {name!r}: {unavailable_baselines()[name]}')
        self.name = name
        self._create = create
        self._tracker: Any = None
        self.box: Box = (0.0, 0.0, 0.0, 0.0)

    def _rect(self, box: Sequence[float]) -> Tuple[Any, ...]:
        """Return the box as OpenCV takes it: floats (legacy API) or whole pixels."""
        if self.legacy:
            return tuple(float(v) for v in box)
        x, y = int(math.floor(box[0])), int(math.floor(box[1]))
        return (x, y, max(1, int(round(box[0] + box[2])) - x),
                max(1, int(round(box[1] + box[3])) - y))

    def initialize(self, frame: np.ndarray, box: Sequence[float]) -> None:
        """Start on ``frame`` (RGB uint8) with the target in ``box`` (x, y, w, h)."""
        cv2.setRNGSeed(RNG_SEED)  # MIL, TLD draw samples from OpenCV's global RNG
        self._tracker = self._create()
        started = self._tracker.init(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR), self._rect(box))
        if started is False:  # the current API returns None, the legacy one a bool
            raise RuntimeError(f'{self.name}: OpenCV refused to start on box {tuple(box)}')
        self.box = tuple(float(v) for v in box)

    def track(self, frame: np.ndarray) -> Box:
        """Return the box in ``frame``; the previous box when OpenCV reports a failure."""
        if self._tracker is None:
            raise RuntimeError(f'{self.name}: initialize() first')
        found, box = self._tracker.update(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
        if found and all(math.isfinite(v) for v in box) and box[2] > 0 and box[3] > 0:
            self.box = tuple(float(v) for v in box)
        return self.box
