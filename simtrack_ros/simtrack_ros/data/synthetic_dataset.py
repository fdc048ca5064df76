"""Synthetic maritime datasets with exact challenge labels, in the GOT-10k / MVTD layout.

Each sequence is drawn from its own seed (:func:`sequence_seed`: the dataset seed, the split's
name and the sequence's number), so a dataset is the same bytes whatever the number of worker
processes, and splits never share a seed. A sequence folder holds what
:func:`~simtrack_ros.data.sequences.write_sequence` writes (frames, ``groundtruth.txt``,
``absence.label``, ``cut_by_image.label``, ``cover.label``), ``annotations.jsonl`` with the
ten-class truth of every frame (source ``synthetic``, the visible ratio) and ``synthetic.json``
(what the plan staged, for reference; the labels are measured on the render).
"""
from __future__ import annotations

from dataclasses import dataclass, field
import json
import multiprocessing
from pathlib import Path
import sys
import time
from typing import Callable, Dict, Iterator, List, Mapping, Sequence, Tuple, Union
import zlib

import cv2
import numpy as np

from simtrack_ros.allocator_tuning import tune_allocator_for_images
from simtrack_ros.challenges import CHALLENGE_NAMES, NORMAL
from simtrack_ros.data.annotations import AnnotationWriter, Flag, FrameRecord
from simtrack_ros.data.sequences import LIST_FILE, write_sequence
from simtrack_ros.data.synthetic_plan import build_plan, choose_variants, parse_mix, Plan
from simtrack_ros.data.synthetic_scene import FrameTruth, label_files, LabelRules, SceneRenderer

SOURCE = 'synthetic'
ANNOTATION_FILE = 'annotations.jsonl'
SCENE_FILE = 'synthetic.json'


@dataclass(frozen=True)
class SynthOptions:
    """What every sequence of a dataset shares."""

    width: int = 640
    height: int = 360
    frames: int = 150
    fps: float = 30.0
    mix: Mapping[str, float] = field(default_factory=lambda: parse_mix('all'))
    max_challenges: int = 2
    image_format: str = 'jpg'
    quality: int = 90
    rules: LabelRules = LabelRules()

    def __post_init__(self) -> None:
        if self.width < 64 or self.height < 64:
            raise ValueError(f'frames must be at least 64x64, got {self.width}x{self.height}')
        if self.frames < 1:
            raise ValueError(f'a sequence needs at least one frame, got {self.frames}')
        if self.max_challenges < 1:
            raise ValueError(f'max_challenges must be >= 1, got {self.max_challenges}')


@dataclass(frozen=True)
class SequenceResult:
    """One written sequence: its folder, seed, staged variants and frames per class."""

    path: Path
    seed: int
    variants: Tuple[str, ...]
    class_frames: Dict[str, int]


def sequence_seed(seed: int, split: str, index: int) -> int:
    """Seed of sequence ``index`` of ``split`` (the split's name is part of the entropy)."""
    entropy = [int(seed) % 2 ** 63, zlib.crc32(split.encode('utf-8')), int(index)]
    return int(np.random.SeedSequence(entropy).generate_state(1, np.uint64)[0] >> 1)


def sequence_plan(seed: int, options: SynthOptions) -> Plan:
    """Plan the sequence of this seed, its variants drawn from ``options.mix``."""
    chooser = np.random.default_rng([seed, 1])
    variants = choose_variants(chooser, options.mix, options.max_challenges)
    return build_plan(seed, options.width, options.height, options.frames, variants, options.fps)


def _xyxy(box: Sequence[float]) -> Tuple[float, float, float, float]:
    x, y, w, h = (float(v) for v in box)
    return x, y, x + w, y + h


def frame_record(name: str, frame_file: str, index: int, truth: FrameTruth,
                 template: Sequence[float]) -> FrameRecord:
    """Build the annotation of one frame: every challenge judged, source ``synthetic``."""
    flags = {cls: Flag(truth.flags[cls], SOURCE) for cls in CHALLENGE_NAMES if cls != NORMAL}
    box = truth.box
    visible_box = _xyxy(box) if box[2] > 0 and box[3] > 0 else None   # clipped away: no box
    return FrameRecord(name, frame_file, index, _xyxy(template), visible_box,
                       flags=flags, visible_ratio=truth.visible)


def write_synthetic_sequence(path: Union[str, Path], seed: int,
                             options: SynthOptions = SynthOptions()) -> SequenceResult:
    """Render the sequence of ``seed`` into the folder ``path`` (must not exist or be empty)."""
    path = Path(path)
    plan = sequence_plan(seed, options)
    renderer = SceneRenderer(plan, options.rules)
    geometry = [renderer.geometry(i) for i in range(plan.frames)]
    files = [label_files(g, options.rules) for g in geometry]
    truths: List[FrameTruth] = []

    def frames() -> Iterator[np.ndarray]:
        for index, known in enumerate(geometry):
            image, truth = renderer.render(index, known)
            truths.append(truth)
            yield image

    sequence = write_sequence(
        path, frames(), [g.box for g in geometry], absent=[int(f[0]) for f in files],
        cut_by_image=[int(f[1]) for f in files], cover=[f[2] for f in files],
        image_format=options.image_format, quality=options.quality)
    counts = dict.fromkeys(CHALLENGE_NAMES, 0)
    with AnnotationWriter(path / ANNOTATION_FILE) as writer:
        for index, truth in enumerate(truths):
            writer.write(frame_record(path.name, sequence.frame_files[index].name, index,
                                      truth, truths[0].box))
            for name in truth.active():
                counts[name] += 1
    variants = tuple(window.variant for window in plan.windows)
    (path / SCENE_FILE).write_text(json.dumps(plan.summary(), indent=1) + '\n',
                                   encoding='utf-8')
    return SequenceResult(path, seed, variants, counts)


def _job(job: Tuple[str, int, SynthOptions]) -> SequenceResult:
    return write_synthetic_sequence(job[0], job[1], job[2])


def _worker_setup() -> None:
    """Worker processes: one OpenCV thread each, malloc keeping frame-sized buffers."""
    cv2.setNumThreads(1)
    tune_allocator_for_images()


def _progress(total: int, unit: str) -> Callable[[], None]:
    """Return a step function: a tqdm bar if tqdm is installed, else a line on stderr."""
    try:
        from tqdm import tqdm
    except ImportError:
        started, done = time.monotonic(), [0]

        def step() -> None:
            done[0] += 1
            print(f'[simtrack-synth] {done[0]}/{total} {unit} '
                  f'({time.monotonic() - started:.1f} s)', file=sys.stderr, flush=True)
        return step
    bar = tqdm(total=total, unit=unit[:-1] if unit.endswith('s') else unit)

    def update() -> None:
        bar.update(1)
        if bar.n == total:
            bar.close()
    return update


def sequence_names(split: str, count: int) -> List[str]:
    """Return a split's sequence folder names: ``synth_<split>_00001``, ... or ``synth_00001``."""
    return [f'synth_{split}_{i + 1:05d}' if split else f'synth_{i + 1:05d}' for i in range(count)]


def generate_dataset(root: Union[str, Path], counts: Mapping[str, int],
                     options: SynthOptions = SynthOptions(), seed: int = 0, workers: int = 1,
                     progress: bool = True) -> List[SequenceResult]:
    """Write a dataset and return its sequences' results in list order.

    ``counts`` maps split folders (e.g. 'train') to sequence counts; the key '' puts sequences
    directly under ``root``. Each folder gets a ``list.txt``.
    Sequences are rendered by ``workers`` processes; results come back in list order.
    """
    root = Path(root)
    jobs: List[Tuple[str, int, SynthOptions]] = []
    lists: Dict[Path, List[str]] = {}
    for split, count in counts.items():
        if count < 0:
            raise ValueError(f'sequence count of {split or "the dataset"} must be >= 0')
        folder = root / split if split else root
        names = sequence_names(split, count)
        lists[folder] = names
        jobs += [(str(folder / name), sequence_seed(seed, split, i), options)
                 for i, name in enumerate(names)]
    step = _progress(len(jobs), 'sequences') if progress and jobs else (lambda: None)
    results: Dict[str, SequenceResult] = {}
    if workers > 1 and len(jobs) > 1:
        context = multiprocessing.get_context('spawn')
        with context.Pool(min(workers, len(jobs)), initializer=_worker_setup) as pool:
            for result in pool.imap_unordered(_job, jobs):
                results[str(result.path)] = result
                step()
    else:
        for job in jobs:
            results[job[0]] = _job(job)
            step()
    for folder, names in lists.items():
        folder.mkdir(parents=True, exist_ok=True)
        (folder / LIST_FILE).write_text(''.join(f'{n}\n' for n in names), encoding='utf-8')
    return [results[job[0]] for job in jobs]


def parse_splits(spec: str) -> Dict[str, int]:
    """``'train=16,val=2,test=2'`` -> ``{'train': 16, 'val': 2, 'test': 2}``."""
    counts: Dict[str, int] = {}
    for item in (part.strip() for part in spec.split(',') if part.strip()):
        name, _, value = item.partition('=')
        name = name.strip()
        if not name or '/' in name or name in ('.', '..'):
            raise ValueError(f'splits: bad split name {name!r}')
        try:
            counts[name] = int(value)
        except ValueError:
            raise ValueError(f'splits: {item!r} is not name=count') from None
        if counts[name] < 0:
            raise ValueError(f'splits: count of {name!r} must be >= 0')
    if not counts:
        raise ValueError('splits: nothing given')
    return counts


__all__ = ['ANNOTATION_FILE', 'SCENE_FILE', 'SOURCE', 'SequenceResult',
           'SynthOptions', 'frame_record', 'generate_dataset', 'parse_splits', 'sequence_plan',
           'sequence_seed', 'write_synthetic_sequence']
