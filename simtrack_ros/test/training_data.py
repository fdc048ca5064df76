"""A small annotated dataset whose classes and boxes can be learnt, and a model that learns fast.

Each frame shows one rectangle on a textured background, moving from frame to frame. Its class
is visible: ``normal`` (a bright red target), ``low_contrast_object`` (a target close to the
background grey) or ``illumination_change`` (the whole frame dark). Every record judges all nine
challenges (source ``synthetic``), so single and multi-label targets are complete.
"""
from __future__ import annotations

from pathlib import Path
from typing import List, Tuple

import numpy as np

from simtrack_ros.challenges import CHALLENGE_NAMES, NORMAL
from simtrack_ros.data.annotations import Flag, FrameRecord
from simtrack_ros.data.sequences import write_sequence

#: Classes of the generated frames, cycled through a sequence's frames.
CLASSES = (NORMAL, 'low_contrast_object', 'illumination_change')
WIDTH, HEIGHT = 128, 96
#: ``--model_option`` values of a model small enough for CPU tests (tiny: 192 wide, 4 layers).
MODEL_OPTIONS = ('template_size=64', 'search_size=128', 'foveal_size=32', 'width=64',
                 'layers=2', 'heads=2', 'hidden_dim=32', 'cls_hidden_dim=32')


def model_args() -> List[str]:
    """CLI flags selecting the test model."""
    return ['--config', 'tiny'] + [a for option in MODEL_OPTIONS
                                   for a in ('--model_option', option)]


def _frame(rng: np.random.Generator, box: Tuple[float, float, float, float], kind: str
           ) -> np.ndarray:
    frame = rng.integers(90, 130, (HEIGHT, WIDTH, 3)).astype(np.float32)
    x, y, w, h = (int(round(v)) for v in box)
    colour = (230, 30, 30) if kind != 'low_contrast_object' else (128, 122, 118)
    frame[y:y + h, x:x + w] = colour
    if kind == 'illumination_change':
        frame *= 0.25
    return frame.clip(0, 255).astype(np.uint8)


def _record(name: str, index: int, kind: str, box, template_box) -> FrameRecord:
    def xyxy(b):
        return [b[0], b[1], b[0] + b[2], b[1] + b[3]]
    flags = {c: Flag(c == kind, 'synthetic') for c in CHALLENGE_NAMES if c != NORMAL}
    return FrameRecord(sequence_name=name, frame_file=f'{index + 1:08d}.png', frame_index=index,
                       template_bbox=xyxy(template_box), ground_truth_bbox=xyxy(box),
                       flags=flags)


def make_dataset(root: Path, sequences: int = 6, frames: int = 12, seed: int = 0,
                 annotate: bool = True) -> Path:
    """Write ``sequences`` sequences of ``frames`` frames under ``root``; return ``root``."""
    rng = np.random.default_rng(seed)
    for s in range(sequences):
        name = f'seq_{s:03d}'
        w, h = rng.uniform(14, 22), rng.uniform(10, 16)
        starts = rng.uniform([20, 20], [WIDTH - w - 20, HEIGHT - h - 20])
        boxes, images, kinds = [], [], []
        for i in range(frames):
            x, y = (starts + rng.normal(0, 6, 2)).clip([2, 2], [WIDTH - w - 2, HEIGHT - h - 2])
            kind = CLASSES[(i + s) % len(CLASSES)] if i else NORMAL
            boxes.append((float(x), float(y), float(w), float(h)))
            images.append(_frame(rng, boxes[-1], kind))
            kinds.append(kind)
        sequence = write_sequence(root / name, images, boxes, image_format='png')
        if annotate:
            lines = [_record(name, i, kind, box, boxes[0]).to_json()
                     for i, (kind, box) in enumerate(zip(kinds, boxes))]
            (sequence.path / 'annotations.jsonl').write_text('\n'.join(lines) + '\n')
    return root
