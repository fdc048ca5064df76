"""The debug image: each target's box, id, state and challenge label drawn on the frame."""
from __future__ import annotations

from typing import Sequence, Tuple

import cv2
import numpy as np

from simtrack_ros.challenges import CHALLENGE_LABELS, top_class
from simtrack_ros.tracking import TargetResult

#: Box colour (RGB) per track state.
STATE_COLOURS = {
    'tracking': (0, 220, 0),
    'uncertain': (255, 200, 0),
    'lost': (255, 40, 40),
}
_FONT = cv2.FONT_HERSHEY_SIMPLEX
_TEXT_BG = (0, 0, 0)


def challenge_label(result: TargetResult) -> str:
    """Return the top class and its probability ('Occlusion 0.62'), or 'classes: untrained'."""
    if result.probabilities is None or len(result.probabilities) == 0:
        return 'classes: untrained'
    name, probability = top_class(list(result.probabilities), result.class_names)
    return f'{CHALLENGE_LABELS.get(name, name)} {probability:.2f}'


def _text(image: np.ndarray, text: str, origin: Tuple[int, int], colour, scale: float) -> int:
    """Draw ``text`` with a dark background at ``origin`` (top-left); return its height."""
    (width, height), baseline = cv2.getTextSize(text, _FONT, scale, 1)
    x, y = origin
    y = min(max(y, 0), max(image.shape[0] - height - baseline, 0))
    cv2.rectangle(image, (x, y), (x + width + 4, y + height + baseline + 4), _TEXT_BG, -1)
    cv2.putText(image, text, (x + 2, y + height + 2), _FONT, scale, colour, 1, cv2.LINE_AA)
    return height + baseline + 4


def draw(frame: np.ndarray, results: Sequence[TargetResult]) -> np.ndarray:
    """Return a contiguous RGB copy of ``frame`` with every target drawn ('no target' if none)."""
    image = np.array(frame, dtype=np.uint8, order='C', copy=True)
    scale = max(0.4, min(image.shape[:2]) / 900.0)
    if not results:
        _text(image, 'no target (call ~/set_target)', (5, 5), (255, 255, 255), scale)
        return image
    thickness = max(1, int(round(scale * 2)))
    for result in results:
        state = getattr(result.state, 'value', result.state)
        colour = STATE_COLOURS.get(state, (255, 255, 255))
        x, y, w, h = (int(round(v)) for v in result.box)
        cv2.rectangle(image, (x, y), (x + w, y + h), colour, thickness)
        line = _text(image, f'{result.target_id} {state} {result.confidence:.2f}',
                     (x, y + h + 2), colour, scale)
        _text(image, challenge_label(result), (x, y + h + 2 + line), colour, scale)
    return image
