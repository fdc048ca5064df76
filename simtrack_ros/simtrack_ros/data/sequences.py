"""Tracking sequences on disk: the GOT-10k / MVTD layout (also LaSOT and OTB), read and written.

A sequence is a folder of frames plus one box per frame::

    <sequence>/
      00000001.jpg ...       frames (*.jpg, *.jpeg, *.png; natural sort, so frame2 < frame10);
                             LaSOT and OTB keep them in img/
      groundtruth.txt        one x,y,w,h per frame (comma, tab or space; OTB: groundtruth_rect.txt)
      absence.label          optional, one 0/1 per frame (LaSOT: full_occlusion.txt and
                             out_of_view.txt, either one, 1 = absent)
      cut_by_image.label     optional, one 0/1 per frame
      cover.label            optional, one 0..8 per frame (visible ratio = cover / 8)

A dataset root lists its sequences in ``list.txt`` (one relative folder per line) or holds them
as subfolders; folders without a groundtruth file (train/ val/ test/ splits, LaSOT's class
folders) are searched one level further. Frames are read only when asked for
(:meth:`Sequence.frame`), so a sequence of thousands of full-HD frames costs a file listing and
its text files. Malformed data raises :class:`SequenceFormatError` naming the file and, where
there is one, the 1-based line.
"""
from __future__ import annotations

from dataclasses import dataclass
import math
from pathlib import Path
import re
from typing import Iterable, List, Optional, Tuple, Union

import cv2
import numpy as np

PathLike = Union[str, Path]

#: Frame file suffixes, compared case-insensitively.
FRAME_SUFFIXES = ('.jpg', '.jpeg', '.png')
#: Groundtruth files in the order they are looked for (GOT-10k/MVTD/LaSOT, then OTB).
GROUNDTRUTH_FILES = ('groundtruth.txt', 'groundtruth_rect.txt')
ABSENCE_FILE = 'absence.label'
CUT_BY_IMAGE_FILE = 'cut_by_image.label'
COVER_FILE = 'cover.label'
#: LaSOT's per-frame flags; a frame flagged in either is absent.
LASOT_ABSENCE_FILES = ('full_occlusion.txt', 'out_of_view.txt')
LIST_FILE = 'list.txt'
#: Largest ``cover.label`` value (fully visible); visible ratio = cover / COVER_MAX.
COVER_MAX = 8
#: Subfolder that holds the frames in LaSOT and OTB.
FRAME_SUBFOLDER = 'img'
IMAGE_FORMATS = ('jpg', 'png')

_NUMBERED = re.compile(r'^(.*?)(\d+)(\.[A-Za-z]+)$')
_DIGITS = re.compile(r'(\d+)')
_SEPARATOR = re.compile(r'\s*,\s*|\s+')


class SequenceFormatError(ValueError):
    """Malformed sequence data; the message names the file and, if known, the 1-based line."""

    def __init__(self, path: PathLike, message: str, line: Optional[int] = None):
        self.path = Path(path)
        self.line = line
        where = f'{self.path}:{line}' if line is not None else str(self.path)
        super().__init__(f'{where}: {message}')


@dataclass(frozen=True, eq=False)
class Sequence:
    """One tracking sequence: frame files (read lazily) and per-frame boxes and labels.

    ``boxes`` is N x 4 float64 ``(x, y, w, h)``; rows of absent frames may hold 0 or NaN.
    The optional label arrays are None when the sequence has no such file. The arrays are
    read-only views.
    """

    name: str
    path: Path
    frame_files: Tuple[Path, ...]
    boxes: np.ndarray
    absent: Optional[np.ndarray] = None
    cut_by_image: Optional[np.ndarray] = None
    cover: Optional[np.ndarray] = None

    def __post_init__(self) -> None:
        count = len(self.frame_files)
        if self.boxes.shape != (count, 4):
            raise ValueError(f'boxes must be {count} x 4, got {self.boxes.shape}')
        for field in ('absent', 'cut_by_image', 'cover'):
            labels = getattr(self, field)
            if labels is not None and labels.shape != (count,):
                raise ValueError(f'{field} must hold {count} values, got {labels.shape}')
        for field in ('boxes', 'absent', 'cut_by_image', 'cover'):
            array = getattr(self, field)
            if array is not None:
                view = array.view()
                view.setflags(write=False)
                object.__setattr__(self, field, view)

    def __repr__(self) -> str:
        return f'Sequence(name={self.name!r}, path={str(self.path)!r}, frames={len(self)})'

    def __len__(self) -> int:
        return len(self.frame_files)

    def frame(self, index: int) -> np.ndarray:
        """Read frame ``index`` from disk as a fresh RGB uint8 H x W x 3 array."""
        path = self.frame_files[index]
        image = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if image is None:
            reason = 'missing' if not path.is_file() else 'unreadable or corrupt'
            raise SequenceFormatError(path, f'frame {index} is {reason}')
        return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def natural_key(name: str) -> Tuple[Union[str, int], ...]:
    """Sort key that orders embedded numbers by value: ``frame2`` before ``frame10``."""
    parts = _DIGITS.split(name.lower())
    return tuple(int(part) if i % 2 else part for i, part in enumerate(parts))


def _read_lines(path: Path) -> List[str]:
    """Text lines of ``path`` (BOM, CRLF and trailing blank lines tolerated; none inside)."""
    try:
        text = path.read_bytes().decode('utf-8-sig')
    except UnicodeDecodeError as error:
        raise SequenceFormatError(path, f'not UTF-8 text ({error.reason})') from None
    lines = [line.strip() for line in text.splitlines()]
    while lines and not lines[-1]:
        lines.pop()
    for number, line in enumerate(lines, 1):
        if not line:
            raise SequenceFormatError(path, 'blank line', number)
    return lines


def _fields(line: str) -> List[str]:
    """Fields of a stripped line: separated by a comma (spaces around it allowed) or whitespace."""
    return _SEPARATOR.split(line)


def _number(path: Path, line: int, field: str) -> float:
    try:
        return float(field)
    except ValueError:
        raise SequenceFormatError(path, f'{field!r} is not a number', line) from None


def _check_count(path: Path, found: int, frames: int, what: str) -> None:
    if found != frames:
        raise SequenceFormatError(
            path, f'{found} {what} for {frames} frames (one per frame expected)')


def _read_boxes(path: Path) -> np.ndarray:
    lines = _read_lines(path)
    rows = []
    for number, line in enumerate(lines, 1):
        fields = _fields(line)
        if len(fields) != 4:
            raise SequenceFormatError(
                path, f'expected 4 fields x,y,w,h, got {len(fields)}: {line!r}', number)
        rows.append([_number(path, number, field) for field in fields])
    return np.array(rows, np.float64).reshape(-1, 4)


def _box_problem(boxes: np.ndarray, absent: Optional[np.ndarray]) -> Optional[Tuple[int, str]]:
    """First (index, reason) of a present frame's box that is not finite or has negative size.

    Rows of absent frames may hold anything (0 or NaN by convention).
    """
    finite = np.isfinite(boxes).all(axis=1)
    bad = ~finite | (boxes[:, 2:] < 0).any(axis=1)
    if absent is not None:
        bad &= ~absent.astype(bool)
    if not bad.any():
        return None
    index = int(np.argmax(bad))
    reason = 'non-finite box' if not finite[index] else 'negative box size'
    return index, f'{reason} {boxes[index].tolist()} on a present frame'


def _read_labels(path: Path, frames: int, high: int) -> np.ndarray:
    """One integer in 0..high per frame: one per line, or all on one line (LaSOT)."""
    lines = _read_lines(path)
    if len(lines) == 1 and len(_fields(lines[0])) > 1:
        tokens = [(1, field) for field in _fields(lines[0])]
    else:
        tokens = []
        for number, line in enumerate(lines, 1):
            fields = _fields(line)
            if len(fields) != 1:
                raise SequenceFormatError(path, f'expected one value, got {line!r}', number)
            tokens.append((number, fields[0]))
    values = []
    for number, token in tokens:
        value = _number(path, number, token)
        if not (math.isfinite(value) and value == int(value) and 0 <= value <= high):
            raise SequenceFormatError(
                path, f'{token!r} is not an integer in 0..{high}', number)
        values.append(int(value))
    _check_count(path, len(values), frames, 'values')
    return np.array(values, np.int64)


def _frame_folder(path: Path) -> Path:
    subfolder = path / FRAME_SUBFOLDER
    return subfolder if subfolder.is_dir() else path


def _check_numbering(folder: Path, files: List[Path]) -> None:
    """Frames numbered ``<prefix><n><suffix>`` must have no gap in ``n``."""
    matches = [_NUMBERED.match(file.name) for file in files]
    if not all(matches) or len({(m.group(1), m.group(3)) for m in matches}) != 1:
        return
    numbers = [int(m.group(2)) for m in matches]
    for previous, match, number in zip(numbers, matches[1:], numbers[1:]):
        if number != previous + 1:
            width = len(match.group(2))
            missing = f'{match.group(1)}{previous + 1:0{width}d}{match.group(3)}'
            raise SequenceFormatError(
                folder / missing, f'frame missing (frames jump from {previous} to {number})')


def _frame_files(path: Path) -> Tuple[Path, ...]:
    folder = _frame_folder(path)
    files = sorted((f for f in folder.iterdir()
                    if f.suffix.lower() in FRAME_SUFFIXES and f.is_file()),
                   key=lambda f: natural_key(f.name))
    if not files:
        raise SequenceFormatError(folder, f'no frames (*{", *".join(FRAME_SUFFIXES)})')
    _check_numbering(folder, files)
    return tuple(files)


def _groundtruth_file(path: Path) -> Optional[Path]:
    for name in GROUNDTRUTH_FILES:
        if (path / name).is_file():
            return path / name
    return None


def _optional_labels(path: Path, name: str, frames: int, high: int) -> Optional[np.ndarray]:
    file = path / name
    return _read_labels(file, frames, high) if file.is_file() else None


def _absence(path: Path, frames: int) -> Optional[np.ndarray]:
    flags = [_optional_labels(path, name, frames, 1)
             for name in (ABSENCE_FILE,) + LASOT_ABSENCE_FILES]
    present = [f.astype(bool) for f in flags if f is not None]
    return np.logical_or.reduce(present) if present else None


def read_sequence(path: PathLike) -> Sequence:
    """Read the sequence in folder ``path``; frames stay on disk until :meth:`Sequence.frame`."""
    path = Path(path)
    if not path.is_dir():
        raise FileNotFoundError(f'{path}: no such sequence folder')
    groundtruth = _groundtruth_file(path)
    if groundtruth is None:
        raise SequenceFormatError(path, f'no groundtruth file ({" or ".join(GROUNDTRUTH_FILES)})')
    frame_files = _frame_files(path)
    boxes = _read_boxes(groundtruth)
    _check_count(groundtruth, len(boxes), len(frame_files), 'boxes')
    absent = _absence(path, len(frame_files))
    problem = _box_problem(boxes, absent)
    if problem is not None:
        raise SequenceFormatError(groundtruth, problem[1], problem[0] + 1)
    cut = _optional_labels(path, CUT_BY_IMAGE_FILE, len(frame_files), 1)
    cover = _optional_labels(path, COVER_FILE, len(frame_files), COVER_MAX)
    return Sequence(name=path.name, path=path, frame_files=frame_files, boxes=boxes,
                    absent=absent, cut_by_image=None if cut is None else cut.astype(bool),
                    cover=cover)


def _is_sequence(path: Path) -> bool:
    return path.is_dir() and _groundtruth_file(path) is not None


def _list_folder(folder: Path, depth: int) -> List[Path]:
    list_file = folder / LIST_FILE
    if list_file.is_file():
        found = []
        for number, entry in enumerate(_read_lines(list_file), 1):
            sequence = folder / entry
            if not _is_sequence(sequence):
                raise SequenceFormatError(
                    list_file, f'{entry!r} is not a sequence folder with a groundtruth file',
                    number)
            found.append(sequence)
        return found
    found = []
    subfolders = sorted((p for p in folder.iterdir() if p.is_dir() and not p.name.startswith('.')),
                        key=lambda p: natural_key(p.name))
    for sub in subfolders:
        if _is_sequence(sub):
            found.append(sub)
        elif depth > 1:
            found.extend(_list_folder(sub, depth - 1))
    return found


def list_sequences(root: PathLike, split: Optional[str] = None) -> List[Path]:
    """Sequence folders of a dataset root (``root/split`` if a split such as 'train' is given).

    ``list.txt`` decides when present (in its order); otherwise every subfolder with a
    groundtruth file, natural-sorted, and one level further inside subfolders without one.
    """
    folder = Path(root) / split if split else Path(root)
    if not folder.is_dir():
        raise FileNotFoundError(f'{folder}: no such dataset folder')
    return _list_folder(folder, depth=2)


def require_sequences(root: PathLike, split: Optional[str] = None) -> List[Path]:
    """:func:`list_sequences`, with a ValueError naming the folder when it finds none."""
    sequences = list_sequences(root, split)
    if not sequences:
        where = f'split {split!r}' if split else 'no split: sequence folders directly in it'
        raise ValueError(f'{root}: no sequences found ({where})')
    return sequences


def read_dataset(root: PathLike, split: Optional[str] = None) -> List[Sequence]:
    """Read every sequence :func:`list_sequences` finds (frames stay on disk)."""
    return [read_sequence(path) for path in list_sequences(root, split)]


def _format_number(value: float) -> str:
    """Shortest text that reads back as exactly ``value``."""
    return repr(float(value))


def _label_array(values, count: int, name: str, high: int) -> Optional[np.ndarray]:
    if values is None:
        return None
    array = np.asarray(values)
    if array.shape != (count,):
        raise ValueError(f'{name} must hold {count} values, got shape {array.shape}')
    as_int = array.astype(np.int64)
    if not np.array_equal(as_int, array) or as_int.min() < 0 or as_int.max() > high:
        raise ValueError(f'{name} values must be integers in 0..{high}')
    return as_int


def _write_lines(path: Path, lines: Iterable[str]) -> None:
    path.write_text(''.join(f'{line}\n' for line in lines), encoding='utf-8')


def _write_frames(path: Path, frames: Iterable[np.ndarray], count: int, image_format: str,
                  quality: int, written: List[Path]) -> None:
    """Write ``count`` frames as 00000001.<image_format> ..., each file noted in ``written``."""
    params = [cv2.IMWRITE_JPEG_QUALITY, int(quality)] if image_format == 'jpg' else []
    for index, frame in enumerate(frames):
        if index == count:
            raise ValueError(f'more frames than the {count} boxes')
        frame = np.asarray(frame)
        if frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3:
            raise ValueError(f'frame {index}: expected RGB uint8 H x W x 3, got '
                             f'{frame.dtype} {frame.shape}')
        file = path / f'{index + 1:08d}.{image_format}'
        written.append(file)
        if not cv2.imwrite(str(file), cv2.cvtColor(frame, cv2.COLOR_RGB2BGR), params):
            raise OSError(f'{file}: could not write the image')


def write_sequence(path: PathLike, frames: Iterable[np.ndarray], boxes, absent=None,
                   cut_by_image=None, cover=None, image_format: str = 'jpg',
                   quality: int = 95) -> Sequence:
    """Write a sequence in the GOT-10k layout and return it as :func:`read_sequence` reads it.

    ``frames`` (RGB uint8, consumed one at a time) become ``00000001.<image_format>`` ...;
    ``boxes`` (N x 4 xywh) go to ``groundtruth.txt`` with enough digits to read back exactly;
    the label arrays, when given, to ``absence.label``, ``cut_by_image.label``, ``cover.label``.
    ``path`` must not exist yet or be empty. On any error the files written so far are removed.
    """
    path = Path(path)
    if image_format not in IMAGE_FORMATS:
        raise ValueError(f'image_format must be one of {IMAGE_FORMATS}, got {image_format!r}')
    box_array = np.asarray(boxes, np.float64)
    if box_array.ndim != 2 or box_array.shape[1] != 4:
        raise ValueError(f'boxes must be N x 4 (x, y, w, h), got shape {box_array.shape}')
    count = len(box_array)
    if count == 0:
        raise ValueError('a sequence needs at least one frame and box')
    labels = {ABSENCE_FILE: _label_array(absent, count, 'absent', 1),
              CUT_BY_IMAGE_FILE: _label_array(cut_by_image, count, 'cut_by_image', 1),
              COVER_FILE: _label_array(cover, count, 'cover', COVER_MAX)}
    problem = _box_problem(box_array, labels[ABSENCE_FILE])
    if problem is not None:
        raise ValueError(f'boxes[{problem[0]}]: {problem[1]}')
    if path.exists() and any(path.iterdir()):
        raise FileExistsError(f'{path}: folder exists and is not empty')
    created = not path.exists()
    path.mkdir(parents=True, exist_ok=True)
    written: List[Path] = []
    try:
        _write_frames(path, frames, count, image_format, quality, written)
        if len(written) != count:
            raise ValueError(f'{len(written)} frames for {count} boxes')
        for name, values in labels.items():
            if values is not None:
                written.append(path / name)
                _write_lines(path / name, (str(v) for v in values))
        written.append(path / GROUNDTRUTH_FILES[0])
        _write_lines(path / GROUNDTRUTH_FILES[0],
                     (','.join(_format_number(v) for v in box) for box in box_array))
    except BaseException:
        for file in written:
            file.unlink(missing_ok=True)
        if created:
            path.rmdir()
        raise
    return read_sequence(path)
