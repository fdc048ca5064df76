"""Training samples over the annotated dataset layout (docs/data.md, docs/training.md).

* :func:`load_annotated` reads sequences with their ``annotations.jsonl`` records;
  :func:`split_by_sequence` splits them into train and validation by sequence, never by frame.
* :class:`ClassificationDataset`: the design guide's ``MaritimeClassificationDataset`` (one
  sample per annotated frame with a box, the template from the sequence's first frame with a
  box); :class:`TrackingPairDataset`: template/search pairs for box training, drawn like the
  official STARK/SimTrack sampler (causal, within ``max_gap``, search centre/scale jitter).

Crops are cut by the tracker's own code (:mod:`simtrack_ros.tracking.crop`,
:func:`~simtrack_ros.tracking.preprocess.normalize`), so a sample without jitter and
augmentation holds exactly the tensors the tracker builds for that frame. The search box is
normalised the way :func:`~simtrack_ros.tracking.crop.map_box_back` reads the model's output
(crop origin at the reference centre minus half the crop side), so the tracker maps a perfect
prediction back onto the true box. Frames are read from disk when a sample needs them; the
random choices of a sample depend only on ``(seed, epoch, index)``, so any number of DataLoader
workers give the same samples.
"""
from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
import logging
import math
from pathlib import Path, PurePosixPath
from typing import (
    Any, Callable, Dict, Hashable, List, Optional, Sequence as Seq, Tuple, Union)

import numpy as np
import torch
from torch.utils.data import Dataset

from simtrack_ros.challenges import CHALLENGE_NAMES, DEFAULT_PRIORITY, NUM_CHALLENGES
from simtrack_ros.data.annotations import FrameRecord, read_annotations
from simtrack_ros.data.sequences import (
    GROUNDTRUTH_FILES, LIST_FILE, natural_key, read_dataset, Sequence)
from simtrack_ros.tracking.crop import crop_and_resize, crop_window, template_anno
from simtrack_ros.tracking.preprocess import normalize, stack_crops
from simtrack_ros.training.augment import Augment

#: Split folders that :func:`load_annotated` reads when the root has them (``test`` is never
#: read for training).
SPLIT_FOLDERS: Tuple[str, ...] = ('train', 'val')
#: The held-out split folder, never read for training.
TEST_FOLDER = 'test'
ANNOTATION_FILE = 'annotations.jsonl'
#: ``label`` of a sample without a record: ``nn.CrossEntropyLoss``'s default ignore_index.
NO_LABEL = -100
#: Decoded frames kept per dataset copy (per DataLoader worker) by TrackingPairDataset.
FRAME_CACHE_SIZE = 8

Box = Tuple[float, float, float, float]
_LOG = logging.getLogger(__name__)


@dataclass(frozen=True)
class AnnotatedSequence:
    """A sequence and its records by frame index; ``split`` is its split folder, if any."""

    sequence: Sequence
    records: Dict[int, FrameRecord]
    split: Optional[str] = None

    @property
    def name(self) -> str:
        """Return the folder name of the sequence."""
        return self.sequence.name


def _split_folders(root: Path, names: Tuple[str, ...] = SPLIT_FOLDERS) -> List[str]:
    """Return the ``names`` of ``root`` that are split folders, not sequences (none: list.txt)."""
    if (root / LIST_FILE).is_file():
        return []
    return [name for name in names if (root / name).is_dir()
            and not any((root / name / gt).is_file() for gt in GROUNDTRUTH_FILES)]


def _read_records(sequence: Sequence, annotation_file: str,
                  require_records: bool) -> Dict[int, FrameRecord]:
    """Return the records of ``sequence`` by frame index, checked against its frames."""
    path = sequence.path / annotation_file
    if not path.is_file():
        if require_records:
            raise FileNotFoundError(
                f'{path}: no annotation file; run simtrack-annotate on the dataset first')
        return {}
    result = read_annotations(path)
    if result.errors:
        line, reason = result.errors[0]
        more = f' (and {len(result.errors) - 1} more)' if len(result.errors) > 1 else ''
        _LOG.warning('%s:%d: %s%s; the valid lines are used', path, line, reason, more)
    records = {}
    for record in result.records:
        index = record.frame_index
        if index >= len(sequence):
            raise ValueError(f'{path}: frame_index {index} but {sequence.name} has '
                             f'{len(sequence)} frames')
        expected = sequence.frame_files[index]
        if (record.frame_file != expected.relative_to(sequence.path).as_posix()
                and PurePosixPath(record.frame_file).name != expected.name):
            raise ValueError(f'{path}: frame_index {index} names {record.frame_file!r}, but '
                             f'frame {index} of {sequence.name} is {expected.name!r}')
        records[index] = record
    return records


def load_annotated(root: Union[str, Path], split: Optional[str] = None,
                   annotation_file: str = ANNOTATION_FILE,
                   require_records: bool = True) -> List[AnnotatedSequence]:
    """Read the dataset at ``root`` (``root/split`` if given) with each sequence's records.

    Without ``split``, a root holding ``train/`` and/or ``val/`` split folders gives the
    sequences of those folders, each tagged with its split (:func:`split_by_sequence` then
    keeps them); ``test/`` and sequences beside the split folders are not read. Raises
    FileNotFoundError for a missing folder or (``require_records``) a sequence without
    ``annotation_file``, ValueError when no sequence is found or a record does not fit its
    sequence. Bad lines of an annotation file are logged and skipped.
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f'{root}: no such dataset folder')
    splits: List[Optional[str]] = [split] if split else list(_split_folders(root)) or [None]
    if splits == [None] and TEST_FOLDER in _split_folders(root, (TEST_FOLDER,)):
        raise ValueError(f'{root} holds a {TEST_FOLDER}/ split but no train/ or val/: the '
                         'held-out sequences are not trained on; give the folder of the '
                         'training data (train/ and val/, or sequences directly in it)')
    items = [AnnotatedSequence(sequence, _read_records(sequence, annotation_file,
                                                       require_records), name)
             for name in splits for sequence in read_dataset(root, name)]
    if not items:
        where = root / split if split else root
        raise ValueError(f'{where}: no sequences found (a sequence is a folder of frames with '
                         f'{GROUNDTRUTH_FILES[0]}; see docs/data.md)')
    if require_records and not any(item.records for item in items):
        raise ValueError(f'{root}: every {annotation_file} is empty')
    return items


def split_by_sequence(items: Seq[AnnotatedSequence], val_split: float, seed: int
                      ) -> Tuple[List[AnnotatedSequence], List[AnnotatedSequence]]:
    """Split ``items`` into (train, val) by sequence name; every frame of a name on one side.

    Items tagged with both the ``train`` and the ``val`` split (the dataset's own folders,
    see :func:`load_annotated`) keep their folders and ``val_split`` is not used. Otherwise
    ``round(names * val_split)`` names (at least one when ``val_split > 0``, never all) go
    to validation, drawn by ``seed`` from the natural-sorted names: the same names, seed and
    fraction give the same split whatever the order of ``items``.
    """
    if not (isinstance(val_split, (int, float)) and 0.0 <= val_split < 1.0):
        raise ValueError(f'val_split must be in [0, 1), got {val_split!r}')
    if {item.split for item in items} >= set(SPLIT_FOLDERS):
        _LOG.info("using the dataset's train/val folders (val_split is not used)")
        return ([item for item in items if item.split == 'train'],
                [item for item in items if item.split == 'val'])
    names = sorted({item.name for item in items}, key=natural_key)
    count = int(round(len(names) * val_split))
    if val_split > 0 and len(names) > 1:
        count = min(max(count, 1), len(names) - 1)
    order = np.random.default_rng(seed).permutation(len(names))
    val_names = {names[i] for i in order[:count]}
    return ([item for item in items if item.name not in val_names],
            [item for item in items if item.name in val_names])


@dataclass(frozen=True)
class CropSettings:
    """Crop sizes and factors (official training values); sizes come from the model config.

    ``center_jitter`` and ``scale_jitter`` are STARK's search jitter factors: the search
    crop is cut around a box of size ``(w, h) * exp(N(0, 1) * scale_jitter)`` whose centre is
    moved by ``(U(0, 1) - 0.5) * sqrt(jittered w * h) * center_jitter`` per axis.
    """

    template_size: int = 112
    search_size: int = 224
    template_factor: float = 2.0
    search_factor: float = 4.0
    center_jitter: float = 3.5
    scale_jitter: float = 0.5

    def __post_init__(self) -> None:
        for name in ('template_size', 'search_size'):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ValueError(f'{name} must be a positive int, got {value!r}')
        for name in ('template_factor', 'search_factor', 'center_jitter', 'scale_jitter'):
            value = getattr(self, name)
            positive = name.endswith('factor')
            if not (isinstance(value, (int, float)) and math.isfinite(value)
                    and (value > 0 if positive else value >= 0)):
                raise ValueError(f'{name} must be a {"positive" if positive else "non-negative"}'
                                 f' number, got {value!r}')


def jitter_box(box: Box, crops: CropSettings, rng: np.random.Generator) -> Box:
    """Return the box the search crop is cut around in training (STARK's jittered box)."""
    x, y, w, h = box
    size = np.array([w, h]) * np.exp(rng.standard_normal(2) * crops.scale_jitter)
    max_offset = math.sqrt(size[0] * size[1]) * crops.center_jitter
    centre = np.array([x + 0.5 * w, y + 0.5 * h]) + max_offset * (rng.random(2) - 0.5)
    left, top = centre - 0.5 * size
    return float(left), float(top), float(size[0]), float(size[1])


def template_crop(frame: np.ndarray, box: Box, crops: CropSettings
                  ) -> Tuple[np.ndarray, np.ndarray]:
    """Cut the tracker's template: uint8 crop and ``template_anno`` (``Tracker.initialize``)."""
    window = crop_window(box, crops.template_factor)
    crop = crop_and_resize(frame, window, crops.template_size)
    return crop, template_anno(box, crops.template_size / window[2], crops.template_size)


def search_crop(frame: np.ndarray, box: Box, reference: Box, crops: CropSettings
                ) -> Tuple[np.ndarray, np.ndarray]:
    """Search crop around ``reference`` (as ``Tracker.track``) and ``box`` in it.

    The box is normalised xyxy, the inverse of :func:`~simtrack_ros.tracking.crop.map_box_back`
    for this crop, clamped to [0, 1].
    """
    window = crop_window(reference, crops.search_factor)
    side = window[2]
    origin_x = reference[0] + 0.5 * reference[2] - 0.5 * side
    origin_y = reference[1] + 0.5 * reference[3] - 0.5 * side
    x, y, w, h = box
    xyxy = np.array([x - origin_x, y - origin_y, x + w - origin_x, y + h - origin_y]) / side
    return (crop_and_resize(frame, window, crops.search_size),
            np.clip(xyxy, 0.0, 1.0).astype(np.float32))


def model_input(crop: np.ndarray) -> torch.Tensor:
    """Normalised 3 x H x W float32 tensor of a uint8 crop (the tracker's normalisation)."""
    return normalize(stack_crops([crop]))[0]


def frame_box(sequence: Sequence, index: int) -> Optional[Box]:
    """Return the frame's box as the tracker takes it; None if absent or not usable."""
    if sequence.absent is not None and sequence.absent[index]:
        return None
    box = tuple(float(v) for v in sequence.boxes[index])
    if not all(math.isfinite(v) for v in box) or box[2] <= 0 or box[3] <= 0:
        return None
    return box  # type: ignore[return-value]


def first_box_frame(sequence: Sequence) -> Optional[int]:
    """First frame with a usable box: simtrack-annotate's template frame."""
    return next((i for i in range(len(sequence)) if frame_box(sequence, i) is not None), None)


def evenly_spaced(values: Seq[int], limit: int) -> List[int]:
    """At most ``limit`` of ``values``, evenly spaced, first and last kept."""
    if len(values) <= limit:
        return list(values)
    return [values[i] for i in np.linspace(0, len(values) - 1, limit).round().astype(int)]


def label_targets(record: Optional[FrameRecord], priority: Seq[str]) -> Dict[str, Any]:
    """``label``, ``multi_label``, ``judged``, ``has_label`` of a record (or of none)."""
    if record is None:
        return {'label': torch.tensor(NO_LABEL, dtype=torch.int64),
                'multi_label': torch.zeros(NUM_CHALLENGES),
                'judged': torch.zeros(NUM_CHALLENGES),
                'has_label': torch.tensor(False)}
    return {'label': torch.tensor(CHALLENGE_NAMES.index(record.single_label(priority)),
                                  dtype=torch.int64),
            'multi_label': torch.from_numpy(record.multi_label()),
            'judged': torch.from_numpy(record.judged_mask()),
            'has_label': torch.tensor(True)}


def _read_only(arrays: Tuple[np.ndarray, ...]) -> Tuple[np.ndarray, ...]:
    """Mark cached arrays read-only (samples share them)."""
    for array in arrays:
        array.setflags(write=False)
    return arrays


class LruCache:
    """Small least-recently-used cache; a pickled copy (a DataLoader worker's) starts empty."""

    def __init__(self, capacity: int) -> None:
        if capacity < 0:
            raise ValueError(f'cache capacity must be >= 0, got {capacity}')
        self.capacity = capacity
        self._values: 'OrderedDict[Hashable, Any]' = OrderedDict()

    def get(self, key: Hashable, make: Callable[[], Any]) -> Any:
        """Return the cached value of ``key``, made by ``make()`` on a miss."""
        if key in self._values:
            self._values.move_to_end(key)
            return self._values[key]
        value = make()
        if self.capacity:
            self._values[key] = value
            while len(self._values) > self.capacity:
                self._values.popitem(last=False)
        return value

    def __getstate__(self) -> Dict[str, Any]:
        return {'capacity': self.capacity}

    def __setstate__(self, state: Dict[str, Any]) -> None:
        self.__init__(state['capacity'])


class _CropDataset(Dataset):
    """What both datasets share: crops, augmentation, seeding by (seed, epoch, index)."""

    def __init__(self, items: Seq[AnnotatedSequence], crops: CropSettings,
                 augment: Optional[Augment], seed: int, priority: Seq[str]) -> None:
        self.items = list(items)
        self.crops = crops
        self.augment = augment
        self.seed = int(seed)
        self.priority = tuple(priority)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Random choices of later samples come from ``(seed, epoch, index)``."""
        self.epoch = int(epoch)

    def _rng(self, index: int) -> np.random.Generator:
        return np.random.default_rng([self.seed, self.epoch, index])

    def _sample(self, item: AnnotatedSequence, frame_index: int, template: np.ndarray,
                anno: np.ndarray, search: np.ndarray, search_box: np.ndarray,
                rng: Optional[np.random.Generator], with_label: bool) -> Dict[str, Any]:
        if self.augment is not None and rng is not None:
            template, search, search_box = self.augment(template, search, search_box, rng)
        record = item.records.get(frame_index) if with_label else None
        return {'template': model_input(template), 'search': model_input(search),
                'template_anno': torch.tensor(anno, dtype=torch.float32),
                'search_box': torch.tensor(search_box, dtype=torch.float32),
                **label_targets(record, self.priority),
                'sequence': item.name, 'frame_index': int(frame_index)}


class ClassificationDataset(_CropDataset):
    """One sample per annotated frame with a box: template + search crop + labels.

    The template is the sequence's first frame with a usable box (the template simtrack-annotate
    judged against), or ``template_frame`` when given; the search crop is centred on the frame's
    own box, jittered (``crops`` jitter factors) and augmented only when ``augment`` is given.
    At most ``max_samples_per_seq`` frames per sequence, evenly spaced.
    """

    def __init__(self, items: Seq[AnnotatedSequence], crops: CropSettings,
                 max_samples_per_seq: int = 500, priority: Seq[str] = DEFAULT_PRIORITY,
                 augment: Optional[Augment] = None, seed: int = 0,
                 template_frame: Optional[int] = None) -> None:
        super().__init__(items, crops, augment, seed, priority)
        if max_samples_per_seq < 1:
            raise ValueError(f'max_samples_per_seq must be >= 1, got {max_samples_per_seq}')
        self._templates: Dict[int, Tuple[int, Box]] = {}
        self._samples: List[Tuple[int, int]] = []
        for k, item in enumerate(self.items):
            frames = [i for i in sorted(item.records) if frame_box(item.sequence, i) is not None
                      and item.records[i].ground_truth_bbox is not None]
            template = first_box_frame(item.sequence) if template_frame is None \
                else template_frame
            if not frames or template is None:
                continue
            if not 0 <= template < len(item.sequence) \
                    or frame_box(item.sequence, template) is None:
                raise ValueError(f'{item.name}: template frame {template} has no usable box')
            self._templates[k] = (template, frame_box(item.sequence, template))
            self._samples.extend((k, i) for i in evenly_spaced(frames, max_samples_per_seq))
        if not self._samples:
            raise ValueError('no annotated frame with a box in the given sequences')
        self._template_crops = LruCache(len(self._templates))

    def __len__(self) -> int:
        return len(self._samples)

    def _records(self) -> List[FrameRecord]:
        return [self.items[k].records[i] for k, i in self._samples]

    def labels(self) -> np.ndarray:
        """Single label ids (CHALLENGE_NAMES order) of every sample, int64."""
        return np.array([CHALLENGE_NAMES.index(r.single_label(self.priority))
                         for r in self._records()], dtype=np.int64)

    def multi_labels(self) -> np.ndarray:
        """N x 10 float32 multi-label targets."""
        return np.stack([r.multi_label() for r in self._records()])

    def judged_masks(self) -> np.ndarray:
        """N x 10 float32: 1 where the class was judged (for a masked multi-label loss)."""
        return np.stack([r.judged_mask() for r in self._records()])

    def _template(self, k: int) -> Tuple[np.ndarray, np.ndarray]:
        frame_index, box = self._templates[k]
        return self._template_crops.get(k, lambda: _read_only(template_crop(
            self.items[k].sequence.frame(frame_index), box, self.crops)))

    def __getitem__(self, index: int) -> Dict[str, Any]:
        k, frame_index = self._samples[index]
        item = self.items[k]
        template, anno = self._template(k)
        box = frame_box(item.sequence, frame_index)
        rng = self._rng(index) if self.augment is not None else None
        reference = box if rng is None else jitter_box(box, self.crops, rng)
        search, search_box = search_crop(item.sequence.frame(frame_index), box, reference,
                                         self.crops)
        return self._sample(item, frame_index, template, anno, search, search_box, rng, True)


class TrackingPairDataset(_CropDataset):
    """``samples_per_epoch`` template/search pairs for box training (STARK's causal sampler).

    A sample picks a sequence uniformly, a template frame uniformly among the visible frames
    that have a search candidate at most ``max_gap`` frames later, and the search frame
    uniformly among those candidates. Search candidates are the visible frames, or only those
    with a record when ``labelled_search`` (joint training on sparsely annotated sequences).
    Absent frames and frames without a usable box are never used. The search crop is cut
    around the jittered box (:func:`jitter_box`); ``search_box`` is the true box in it, clamped
    to [0, 1]. With ``with_labels`` the search frame's record gives the labels (``has_label``
    False where it has none).
    """

    def __init__(self, items: Seq[AnnotatedSequence], crops: CropSettings,
                 samples_per_epoch: int, max_gap: int = 200, augment: Optional[Augment] = None,
                 seed: int = 0, with_labels: bool = True,
                 priority: Seq[str] = DEFAULT_PRIORITY, labelled_search: bool = False) -> None:
        super().__init__(items, crops, augment, seed, priority)
        if samples_per_epoch < 1 or max_gap < 1:
            raise ValueError(f'samples_per_epoch and max_gap must be >= 1, got '
                             f'{samples_per_epoch} and {max_gap}')
        self.samples_per_epoch = int(samples_per_epoch)
        self.max_gap = int(max_gap)
        self.with_labels = with_labels
        # per usable sequence: (item, template frames, search candidates, and per template
        # the [first, end) slice of its candidates)
        self._usable: List[Tuple[int, np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = []
        for k, item in enumerate(self.items):
            visible = np.array([i for i in range(len(item.sequence))
                                if frame_box(item.sequence, i) is not None], dtype=np.int64)
            search = visible[np.isin(visible, list(item.records))] if labelled_search \
                else visible
            first = np.searchsorted(search, visible, side='right')
            end = np.searchsorted(search, visible + self.max_gap, side='right')
            keep = end > first
            if keep.any():
                self._usable.append((k, visible[keep], search, first[keep], end[keep]))
        if not self._usable:
            what = 'annotated ' if labelled_search else ''
            raise ValueError(f'no sequence has a visible frame with a visible {what}frame at '
                             f'most {max_gap} frames later')
        self._frames = LruCache(FRAME_CACHE_SIZE)

    def __len__(self) -> int:
        return self.samples_per_epoch

    def pair(self, index: int) -> Tuple[int, int, int]:
        """(item index, template frame, search frame) of sample ``index`` this epoch."""
        rng = self._rng(index)
        k, templates, search, first, end = self._usable[rng.integers(len(self._usable))]
        choice = rng.integers(len(templates))
        return k, int(templates[choice]), int(search[rng.integers(first[choice], end[choice])])

    def _frame(self, k: int, index: int) -> np.ndarray:
        return self._frames.get((k, index),
                                lambda: _read_only((self.items[k].sequence.frame(index),))[0])

    def __getitem__(self, index: int) -> Dict[str, Any]:
        if not 0 <= index < self.samples_per_epoch:
            raise IndexError(f'sample {index} of {self.samples_per_epoch}')
        k, template_index, search_index = self.pair(index)
        item = self.items[k]
        template, anno = template_crop(self._frame(k, template_index),
                                       frame_box(item.sequence, template_index), self.crops)
        rng = np.random.default_rng([self.seed, self.epoch, index, 1])
        box = frame_box(item.sequence, search_index)
        search, search_box = search_crop(self._frame(k, search_index), box,
                                         jitter_box(box, self.crops, rng), self.crops)
        return self._sample(item, search_index, template, anno, search, search_box, rng,
                            self.with_labels)
