"""Per-frame challenge annotations: the ``annotations.jsonl`` record, its reader and writer.

One JSON object per line, one line per annotated frame of one sequence. The fields of the design
guide (``sequence_name``, ``frame_file``, ``template_bbox``, ``ground_truth_bbox`` as xyxy,
``vlm_response``, ``cv_response``) plus ``frame_index``, ``flags`` (the merged view, each flag
with its source), ``visible_ratio`` and ``version``. Class keys are canonical names
(:mod:`simtrack_ros.challenges`) on write; the guide's keys are accepted on read. A line of the
guide's own format (no ``version``, no ``flags``) is read as well: its flags are derived from
``vlm_response`` then ``cv_response`` (sources ``vlm`` and ``cv``) and, lacking
``frame_index``, it is numbered by its order among the file's non-blank lines (0-based).
"""
from __future__ import annotations

import dataclasses
import fcntl
import json
import logging
import math
import numbers
import os
from pathlib import Path
import threading
from typing import Any, Dict, List, Mapping, Optional, Sequence, Set, Tuple, Union

import numpy as np

from simtrack_ros.challenges import (
    canonical_name, CHALLENGE_NAMES, DEFAULT_PRIORITY, NORMAL, single_label)

RECORD_VERSION = 1
SUPPORTED_VERSIONS: Tuple[int, ...] = (1,)
SOURCES: Tuple[str, ...] = ('cv', 'vlm', 'dataset', 'synthetic', 'human')
#: Who wins when two sources flag the same class (first wins).
SOURCE_PRECEDENCE: Tuple[str, ...] = ('human', 'synthetic', 'dataset', 'vlm', 'cv')
FIELDS: Tuple[str, ...] = (
    'version', 'sequence_name', 'frame_file', 'frame_index', 'template_bbox',
    'ground_truth_bbox', 'vlm_response', 'cv_response', 'flags', 'visible_ratio')
#: The fields of a line in the design guide's format.
GUIDE_FIELDS: Tuple[str, ...] = (
    'sequence_name', 'frame_file', 'template_bbox', 'ground_truth_bbox', 'vlm_response',
    'cv_response')

Box = Tuple[float, float, float, float]
VlmResponse = Dict[str, Dict[str, Union[int, float]]]
CvResponse = Dict[str, int]
_LOG = logging.getLogger(__name__)


def _bit(value: Any, field: str) -> int:
    """Return a 0/1 flag as int; ValueError naming ``field`` otherwise."""
    if isinstance(value, (bool, np.bool_)) or (
            isinstance(value, numbers.Integral) and value in (0, 1)):
        return int(value)
    raise ValueError(f'{field}: expected 0 or 1, got {value!r}')


def _unit(value: Any, field: str) -> float:
    """Return a number in [0, 1] as float; ValueError naming ``field`` otherwise."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise ValueError(f'{field}: expected a number in [0, 1], got {value!r}')
    if not 0.0 <= float(value) <= 1.0:
        raise ValueError(f'{field}: {value!r} is outside [0, 1]')
    return float(value)


def _text(value: Any, field: str) -> str:
    if not isinstance(value, str) or not value:
        raise ValueError(f'{field}: expected a non-empty string, got {value!r}')
    return value


def _box(value: Any, field: str) -> Box:
    """Return an xyxy box of 4 finite floats with x2 > x1 and y2 > y1."""
    if isinstance(value, (str, bytes, Mapping)) or not isinstance(value, (Sequence, np.ndarray)):
        raise ValueError(f'{field}: expected [x1, y1, x2, y2], got {value!r}')
    items = list(value)
    if len(items) != 4 or any(
            isinstance(v, (bool, np.bool_)) or not isinstance(v, numbers.Real) for v in items):
        raise ValueError(f'{field}: expected 4 numbers [x1, y1, x2, y2], got {value!r}')
    box = tuple(float(v) for v in items)
    if not all(math.isfinite(v) for v in box):
        raise ValueError(f'{field}: coordinates must be finite, got {list(box)}')
    if box[2] <= box[0] or box[3] <= box[1]:
        raise ValueError(f'{field}: needs x2 > x1 and y2 > y1, got {list(box)}')
    return box  # type: ignore[return-value]


def _class_keys(value: Any, field: str, allow_normal: bool) -> Dict[str, Any]:
    """Canonicalise the class keys of a mapping, rejecting unknown names and duplicates."""
    if not isinstance(value, Mapping):
        raise ValueError(f'{field}: expected an object keyed by class, got {value!r}')
    out: Dict[str, Any] = {}
    for key, item in value.items():
        try:
            name = canonical_name(key)
        except ValueError as exc:
            raise ValueError(f'{field}: {exc}') from None
        if name == NORMAL and not allow_normal:
            raise ValueError(f"{field}: 'normal' is not a flag (it means nothing is active)")
        if name in out:
            raise ValueError(f'{field}: class {name!r} given twice (as {key!r})')
        out[name] = item
    return {name: out[name] for name in CHALLENGE_NAMES if name in out}


@dataclasses.dataclass(frozen=True)
class Flag:
    """One class judged on (``flag``) or off, by ``source``, with an optional confidence."""

    flag: bool
    source: str
    confidence: Optional[float] = None

    def __post_init__(self) -> None:
        object.__setattr__(self, 'flag', bool(_bit(self.flag, 'flag')))
        if self.source not in SOURCES:
            raise ValueError(f'source: {self.source!r} is not one of {", ".join(SOURCES)}')
        if self.confidence is not None:
            object.__setattr__(self, 'confidence', _unit(self.confidence, 'confidence'))

    def to_dict(self) -> Dict[str, Any]:
        return {'flag': int(self.flag), 'source': self.source, 'confidence': self.confidence}

    @classmethod
    def from_dict(cls, value: Any, field: str = 'flag') -> 'Flag':
        """Build from ``{"flag", "source", "confidence"?}``; ValueError naming ``field``."""
        if not isinstance(value, Mapping):
            raise ValueError(
                f'{field}: expected {{"flag", "source", "confidence"}}, got {value!r}')
        unknown = set(value) - {'flag', 'source', 'confidence'}
        if unknown:
            raise ValueError(f'{field}: unknown keys {sorted(unknown)}')
        for key in ('flag', 'source'):
            if key not in value:
                raise ValueError(f'{field}.{key}: missing')
        try:
            return cls(value['flag'], value['source'], value.get('confidence'))
        except ValueError as exc:
            raise ValueError(f'{field}.{exc}') from None


def _vlm_response(value: Any) -> Optional[VlmResponse]:
    if value is None:
        return None
    out: VlmResponse = {}
    for name, item in _class_keys(value, 'vlm_response', allow_normal=True).items():
        field = f'vlm_response.{name}'
        if not isinstance(item, Mapping) or set(item) != {'flag', 'confidence'}:
            raise ValueError(f'{field}: expected {{"flag", "confidence"}}, got {item!r}')
        out[name] = {'flag': _bit(item['flag'], f'{field}.flag'),
                     'confidence': _unit(item['confidence'], f'{field}.confidence')}
    return out


def _cv_response(value: Any) -> Optional[CvResponse]:
    if value is None:
        return None
    return {name: _bit(item, f'cv_response.{name}')
            for name, item in _class_keys(value, 'cv_response', allow_normal=True).items()}


def _flags(value: Any) -> Dict[str, Flag]:
    out: Dict[str, Flag] = {}
    for name, item in _class_keys(value, 'flags', allow_normal=False).items():
        if isinstance(item, Flag):
            out[name] = item
        else:
            out[name] = Flag.from_dict(item, f'flags.{name}')
    return out


def merge_flags(*sources: Mapping[str, Flag]) -> Dict[str, Flag]:
    """Merge per-class flags: per class the flag whose source comes first in SOURCE_PRECEDENCE.

    Between two flags of the same source the later mapping wins. Keys may be annotation keys;
    the result has canonical names in CHALLENGE_NAMES order.
    """
    merged: Dict[str, Flag] = {}
    for mapping in sources:
        for name, flag in _flags(mapping).items():
            old = merged.get(name)
            if old is None or (SOURCE_PRECEDENCE.index(flag.source)
                               <= SOURCE_PRECEDENCE.index(old.source)):
                merged[name] = flag
    return {name: merged[name] for name in CHALLENGE_NAMES if name in merged}


def response_flags(vlm_response: Optional[Mapping[str, Any]],
                   cv_response: Optional[Mapping[str, Any]]) -> Dict[str, Flag]:
    """Return the flags of the raw answers (VLM over CV; 'normal' entries are ignored)."""
    vlm = {name: Flag(bool(item['flag']), 'vlm', item['confidence'])
           for name, item in (_vlm_response(vlm_response) or {}).items() if name != NORMAL}
    cv = {name: Flag(bool(item), 'cv')
          for name, item in (_cv_response(cv_response) or {}).items() if name != NORMAL}
    return merge_flags(cv, vlm)


@dataclasses.dataclass(frozen=True)
class FrameRecord:
    """One frame's annotation; validated and canonicalised on construction (ValueError)."""

    sequence_name: str
    frame_file: str
    frame_index: int
    template_bbox: Box
    ground_truth_bbox: Optional[Box] = None
    vlm_response: Optional[VlmResponse] = None
    cv_response: Optional[CvResponse] = None
    flags: Dict[str, Flag] = dataclasses.field(default_factory=dict)
    visible_ratio: Optional[float] = None
    version: int = RECORD_VERSION

    def __post_init__(self) -> None:
        def put(name: str, value: Any) -> None:
            object.__setattr__(self, name, value)

        if isinstance(self.version, bool) or self.version not in SUPPORTED_VERSIONS:
            raise ValueError(f'version: {self.version!r} is not supported '
                             f'(supported: {list(SUPPORTED_VERSIONS)})')
        _text(self.sequence_name, 'sequence_name')
        _text(self.frame_file, 'frame_file')
        if (isinstance(self.frame_index, (bool, np.bool_))
                or not isinstance(self.frame_index, numbers.Integral) or self.frame_index < 0):
            raise ValueError(f'frame_index: expected an integer >= 0, got {self.frame_index!r}')
        put('frame_index', int(self.frame_index))
        put('template_bbox', _box(self.template_bbox, 'template_bbox'))
        if self.ground_truth_bbox is not None:
            put('ground_truth_bbox', _box(self.ground_truth_bbox, 'ground_truth_bbox'))
        put('vlm_response', _vlm_response(self.vlm_response))
        put('cv_response', _cv_response(self.cv_response))
        put('flags', _flags(self.flags))
        if self.visible_ratio is not None:
            put('visible_ratio', _unit(self.visible_ratio, 'visible_ratio'))

    def active(self) -> Tuple[str, ...]:
        """Classes flagged on, in CHALLENGE_NAMES order (never 'normal')."""
        return tuple(name for name, flag in self.flags.items() if flag.flag)

    def single_label(self, priority: Sequence[str] = DEFAULT_PRIORITY) -> str:
        """One class by the explicit priority rule of :func:`challenges.single_label`."""
        return single_label(dict.fromkeys(self.active(), True), priority)

    def multi_label(self) -> np.ndarray:
        """float32 vector in CHALLENGE_NAMES order; 'normal' is 1 iff nothing is active."""
        active = set(self.active())
        vector = np.array([name in active for name in CHALLENGE_NAMES], dtype=np.float32)
        vector[CHALLENGE_NAMES.index(NORMAL)] = float(not active)
        return vector

    def judged_mask(self) -> np.ndarray:
        """float32 vector: 1 where :meth:`multi_label` is known (the class was judged).

        'normal' is known when a class is active or every other class was judged.
        """
        mask = np.array([name in self.flags for name in CHALLENGE_NAMES], dtype=np.float32)
        known = bool(self.active()) or len(self.flags) == len(CHALLENGE_NAMES) - 1
        mask[CHALLENGE_NAMES.index(NORMAL)] = float(known)
        return mask

    def to_dict(self) -> Dict[str, Any]:
        return {
            'version': self.version,
            'sequence_name': self.sequence_name,
            'frame_file': self.frame_file,
            'frame_index': self.frame_index,
            'template_bbox': list(self.template_bbox),
            'ground_truth_bbox': (None if self.ground_truth_bbox is None
                                  else list(self.ground_truth_bbox)),
            'vlm_response': self.vlm_response,
            'cv_response': self.cv_response,
            'flags': {name: flag.to_dict() for name, flag in self.flags.items()},
            'visible_ratio': self.visible_ratio,
        }

    def to_json(self) -> str:
        """One line of JSON (no newline)."""
        return json.dumps(self.to_dict(), allow_nan=False)

    @classmethod
    def from_dict(cls, value: Any, default_index: Optional[int] = None) -> 'FrameRecord':
        """Build from a parsed line; a guide-format line takes ``default_index`` if given."""
        if not isinstance(value, Mapping):
            raise ValueError(f'expected a JSON object, got {type(value).__name__}')
        unknown = sorted(set(value) - set(FIELDS))
        if unknown:
            raise ValueError(f'unknown fields {unknown}')
        guide = 'version' not in value and 'flags' not in value
        required = GUIDE_FIELDS if guide else FIELDS
        if guide and default_index is None:
            required = required + ('frame_index',)
        missing = [name for name in required if name not in value]
        if missing:
            raise ValueError(f'missing fields {missing}')
        fields = dict(value)
        if guide:
            fields.setdefault('frame_index', default_index)
            fields['flags'] = response_flags(fields['vlm_response'], fields['cv_response'])
        return cls(**fields)

    @classmethod
    def from_json(cls, text: str, default_index: Optional[int] = None) -> 'FrameRecord':
        """Parse one line; ValueError saying what is wrong (invalid JSON or which field)."""
        try:
            value = json.loads(text, parse_constant=_reject_constant,
                               object_pairs_hook=_unique_keys)
        except json.JSONDecodeError as exc:
            raise ValueError(f'invalid JSON: {exc}') from None
        return cls.from_dict(value, default_index)


def _reject_constant(name: str) -> None:
    raise ValueError(f'invalid JSON: {name} is not allowed')


def _unique_keys(pairs: List[Tuple[str, Any]]) -> Dict[str, Any]:
    out: Dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise ValueError(f'invalid JSON: key {key!r} appears twice in one object')
        out[key] = value
    return out


@dataclasses.dataclass
class ReadResult:
    """The valid records of a file, by frame_index, and (1-based line, reason) per bad line."""

    records: List[FrameRecord]
    errors: List[Tuple[int, str]]


def parse_annotations(data: bytes) -> ReadResult:
    """Parse the bytes of an ``annotations.jsonl`` file; see :func:`read_annotations`."""
    lines = data.split(b'\n')
    torn = len(lines) if lines[-1].strip() else None
    kept: Dict[int, Tuple[int, FrameRecord]] = {}
    errors: List[Tuple[int, str]] = []
    sequence: Optional[Tuple[int, str]] = None
    count = 0
    for number, raw in enumerate(lines, start=1):
        if not raw.strip():
            continue
        count += 1
        try:
            record = FrameRecord.from_json(raw.decode('utf-8'), default_index=count - 1)
        except (UnicodeDecodeError, ValueError) as exc:
            note = ' (last line has no newline: a write cut short?)' if number == torn else ''
            errors.append((number, f'{exc}{note}'))
            continue
        if sequence is None:
            sequence = (number, record.sequence_name)
        elif record.sequence_name != sequence[1]:
            errors.append((number, f'sequence_name {record.sequence_name!r} differs from '
                                   f'{sequence[1]!r} on line {sequence[0]}; line skipped'))
            continue
        if record.frame_index in kept:
            first = kept[record.frame_index][0]
            errors.append((first, f'frame_index {record.frame_index} appears again on line '
                                  f'{number}; the later line wins'))
        kept[record.frame_index] = (number, record)
    errors.sort(key=lambda item: item[0])
    return ReadResult([kept[index][1] for index in sorted(kept)], errors)


def read_annotations(path: Union[str, os.PathLike]) -> ReadResult:
    """Read ``annotations.jsonl``: keep the valid lines, report each bad one by line number.

    Blank lines are ignored. Records come back sorted by frame_index; when a frame_index
    repeats, the later line wins (an appended correction) and the earlier is reported.
    Lines naming another sequence than the first valid line are reported and skipped.
    """
    return parse_annotations(Path(path).read_bytes())


class AnnotationWriter:
    """Append records to ``annotations.jsonl``, one complete line per write, flushed and synced.

    Opening takes an exclusive lock on the file (a second writer gets OSError) and truncates a
    torn last line (bytes after the last newline: a run killed mid-write), reported by
    :attr:`torn_bytes` and a log warning. :meth:`done_frames` lists the frames already
    present, so a resumed run writes each frame once; writing one again is a ValueError.
    """

    def __init__(self, path: Union[str, os.PathLike]) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._fd: Optional[int] = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o644)
        try:
            try:
                fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise OSError(f'{self.path}: another writer has it open') from None
            data = self._read_all()
            keep = data.rfind(b'\n') + 1
            self.torn_bytes = len(data) - keep
            if self.torn_bytes:
                os.ftruncate(self._fd, keep)
                os.fsync(self._fd)
                _LOG.warning('%s: removed a torn last line (%d bytes, no newline)',
                             self.path, self.torn_bytes)
            existing = parse_annotations(data[:keep])
        except BaseException:
            os.close(self._fd)
            raise
        #: Bad lines found on open, as read_annotations reports them.
        self.errors: List[Tuple[int, str]] = existing.errors
        self._done: Set[int] = {record.frame_index for record in existing.records}
        self._sequence = existing.records[0].sequence_name if existing.records else None

    def _read_all(self) -> bytes:
        assert self._fd is not None
        os.lseek(self._fd, 0, os.SEEK_SET)
        chunks = []
        while True:
            chunk = os.read(self._fd, 1 << 20)
            if not chunk:
                return b''.join(chunks)
            chunks.append(chunk)

    def done_frames(self) -> Set[int]:
        """Return the frame indexes present in the file (read on open plus those written since)."""
        with self._lock:
            return set(self._done)

    def write(self, record: FrameRecord) -> None:
        """Append one record as one line; ValueError for a frame already present."""
        line = (record.to_json() + '\n').encode('utf-8')
        with self._lock:
            if self._fd is None:
                raise ValueError(f'{self.path}: writer is closed')
            if record.frame_index in self._done:
                raise ValueError(f'{self.path}: frame_index {record.frame_index} is already '
                                 'written')
            if self._sequence is not None and record.sequence_name != self._sequence:
                raise ValueError(f'{self.path}: holds sequence {self._sequence!r}, not '
                                 f'{record.sequence_name!r}')
            size = os.fstat(self._fd).st_size
            written = os.write(self._fd, line)
            if written != len(line):
                os.ftruncate(self._fd, size)
                raise OSError(f'{self.path}: short write ({written} of {len(line)} bytes)')
            os.fsync(self._fd)
            self._done.add(record.frame_index)
            self._sequence = record.sequence_name

    def close(self) -> None:
        with self._lock:
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None

    def __enter__(self) -> 'AnnotationWriter':
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
