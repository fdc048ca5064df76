"""A contact sheet of synthetic frames: one row per class, the true box drawn.

Each row stages the class's variants in turn (one sequence per column) and shows a frame in
which the renderer *measured* that class (for 'normal': a frame with no challenge), captioned
with every class measured on it. ``simtrack-synth --contact-sheet PATH`` writes it.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional, Tuple, Union

import cv2
import numpy as np

from simtrack_ros.challenges import CHALLENGE_LABELS, CHALLENGE_NAMES, NORMAL
from simtrack_ros.data.synthetic_plan import build_plan, VARIANTS
from simtrack_ros.data.synthetic_scene import FrameTruth, SceneRenderer

_SHORT = {'motion_blur': 'blur', 'illumination_change': 'light', 'scale_variation': 'scale',
          'variance_in_appearance': 'appear', 'partial_visibility': 'partial',
          'occlusion': 'occl', 'background_clutter': 'clutter', 'low_resolution': 'lowres',
          'low_contrast_object': 'contrast', NORMAL: 'normal'}
_FONT = cv2.FONT_HERSHEY_SIMPLEX


def _pick(name: str, variant: str, seed: int, frames: int, size: Tuple[int, int]
          ) -> Tuple[np.ndarray, FrameTruth]:
    """Render a frame of a sequence staging ``variant`` in which ``name`` is measured.

    Falls back to the window's middle frame if none of the candidates shows it.
    """
    plan = build_plan(seed, size[0], size[1], frames, [variant])
    renderer = SceneRenderer(plan)
    window = plan.windows[0]
    middle = (window.start + window.stop) // 2
    candidates = sorted(set(np.linspace(window.start, window.stop - 1, 9).astype(int)),
                        key=lambda i: abs(i - middle))
    fallback: Optional[Tuple[np.ndarray, FrameTruth]] = None
    for index in candidates:
        image, truth = renderer.render(int(index))
        if name in truth.active():
            return image, truth
        fallback = fallback or (image, truth)
    assert fallback is not None
    return fallback


def _tile(image: np.ndarray, truth: FrameTruth, thumb: Tuple[int, int]) -> np.ndarray:
    height, width = image.shape[:2]
    scale = thumb[0] / width
    tile = cv2.resize(image, thumb, interpolation=cv2.INTER_AREA)
    x, y, w, h = (v * scale for v in truth.box)
    cv2.rectangle(tile, (int(round(x)), int(round(y))), (int(round(x + w)), int(round(y + h))),
                  (40, 255, 40), 1, cv2.LINE_AA)
    caption = ' '.join(_SHORT[n] for n in truth.active())
    cv2.rectangle(tile, (0, thumb[1] - 14), (thumb[0], thumb[1]), (0, 0, 0), -1)
    cv2.putText(tile, caption, (3, thumb[1] - 3), _FONT, 0.36, (255, 255, 255), 1, cv2.LINE_AA)
    return tile


def contact_sheet(seed: int = 0, columns: int = 4, thumb: Tuple[int, int] = (240, 135),
                  frames: int = 90, size: Tuple[int, int] = (640, 360)) -> np.ndarray:
    """Return the sheet as an RGB uint8 image: a label column, ``columns`` tiles per class."""
    label_width = 150
    rows = []
    for row, name in enumerate(CHALLENGE_NAMES):
        variants = VARIANTS[name]
        tiles = [_tile(*_pick(name, variants[col % len(variants)], seed * 1000 + row * 10 + col,
                              frames, size), thumb) for col in range(columns)]
        label = np.full((thumb[1], label_width, 3), 30, np.uint8)
        cv2.putText(label, CHALLENGE_LABELS[name], (6, thumb[1] // 2), _FONT, 0.45,
                    (255, 255, 255), 1, cv2.LINE_AA)
        cv2.putText(label, ', '.join(variants), (6, thumb[1] // 2 + 18), _FONT, 0.33,
                    (190, 190, 190), 1, cv2.LINE_AA)
        rows.append(np.hstack([label] + tiles))
    return np.vstack(rows)


def write_contact_sheet(path: Union[str, Path], seed: int = 0, quality: int = 85) -> Path:
    """Write :func:`contact_sheet` to ``path`` (.jpg or .png) and return the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    image = cv2.cvtColor(contact_sheet(seed), cv2.COLOR_RGB2BGR)
    params = [cv2.IMWRITE_JPEG_QUALITY, quality] if path.suffix.lower() in ('.jpg', '.jpeg') \
        else []
    if not cv2.imwrite(str(path), image, params):
        raise OSError(f'{path}: could not write the image')
    return path


__all__ = ['contact_sheet', 'write_contact_sheet']
