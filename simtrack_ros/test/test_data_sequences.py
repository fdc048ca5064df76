"""Sequence reader and writer on real files: round trips, each malformed file, dataset layouts."""
from __future__ import annotations

from pathlib import Path
from typing import Iterable, List, Optional

import cv2
import numpy as np
import pytest

from simtrack_ros.data.sequences import (list_sequences, read_dataset, read_sequence, Sequence,
                                         SequenceFormatError, write_sequence)

HEIGHT, WIDTH = 6, 8
BOXES = np.array([[1.5, 2.25, 3.0, 4.0],
                  [0.1 + 0.2, 1 / 3, 1e-7, 123456.789012345],
                  [-2.0, -3.5, 0.0, 0.0],
                  [np.nan, np.nan, np.nan, np.nan]])
ABSENT = np.array([0, 0, 0, 1])
CUT = np.array([0, 1, 1, 0])
COVER = np.array([8, 5, 0, 0])


def _frames(count: int, seed: int = 0) -> List[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (HEIGHT, WIDTH, 3), np.uint8) for _ in range(count)]


def _write_raw(folder: Path, names: Iterable[str], groundtruth: Optional[str] = None,
               groundtruth_name: str = 'groundtruth.txt', **text_files: str) -> Path:
    """Write a hand-made sequence: frame i has every pixel = i, text files byte for byte."""
    folder.mkdir(parents=True, exist_ok=True)
    for index, name in enumerate(names):
        (folder / name).parent.mkdir(exist_ok=True)
        assert cv2.imwrite(str(folder / name), np.full((HEIGHT, WIDTH, 3), index, np.uint8))
    if groundtruth is not None:
        (folder / groundtruth_name).write_bytes(groundtruth.encode())
    for name, text in text_files.items():
        (folder / name.replace('__', '.')).write_bytes(text.encode())
    return folder


def _written(tmp_path: Path) -> Sequence:
    return write_sequence(tmp_path / 'seq', _frames(4), BOXES, absent=ABSENT, cut_by_image=CUT,
                          cover=COVER, image_format='png')


def test_round_trip_is_exact(tmp_path):
    frames = _frames(4)
    written = write_sequence(tmp_path / 'seq', iter(frames), BOXES, absent=ABSENT,
                             cut_by_image=CUT, cover=COVER, image_format='png')
    sequence = read_sequence(tmp_path / 'seq')
    for got in (written, sequence):
        assert got.name == 'seq' and len(got) == 4
        assert [f.name for f in got.frame_files] == [f'0000000{i}.png' for i in range(1, 5)]
        assert got.boxes.dtype == np.float64
        np.testing.assert_array_equal(got.boxes, BOXES)   # NaN == NaN here, bits exact
        assert got.absent.dtype == bool and got.absent.tolist() == ABSENT.astype(bool).tolist()
        assert got.cut_by_image.tolist() == CUT.astype(bool).tolist()
        assert got.cover.tolist() == COVER.tolist()
        for index, frame in enumerate(frames):
            assert np.array_equal(got.frame(index), frame)
    assert sequence.frame(-1).flags.writeable
    with pytest.raises(ValueError):
        sequence.boxes[0, 0] = 1.0


def test_jpeg_round_trip_keeps_boxes_and_omitted_labels(tmp_path):
    frame = np.zeros((64, 64, 3), np.uint8)
    frame[16:48, 16:48] = (200, 40, 30)
    sequence = write_sequence(tmp_path / 'seq', [frame, frame], BOXES[:2], quality=90)
    assert [f.name for f in sequence.frame_files] == ['00000001.jpg', '00000002.jpg']
    np.testing.assert_array_equal(sequence.boxes, BOXES[:2])
    assert sequence.absent is None and sequence.cut_by_image is None and sequence.cover is None
    assert sorted(p.name for p in (tmp_path / 'seq').iterdir()) == [
        '00000001.jpg', '00000002.jpg', 'groundtruth.txt']
    assert np.abs(sequence.frame(1).astype(int) - frame).mean() < 2.0


def test_frames_are_rgb(tmp_path):
    folder = _write_raw(tmp_path / 'seq', [], '0,0,1,1\n')
    assert cv2.imwrite(str(folder / '00000001.png'), np.full((4, 4, 3), (0, 0, 255), np.uint8))
    rgb = read_sequence(folder).frame(0)
    assert rgb.dtype == np.uint8 and rgb.shape == (4, 4, 3)
    assert rgb[0, 0].tolist() == [255, 0, 0]


def test_write_rejects_bad_input_and_leaves_nothing(tmp_path):
    frames = _frames(4)
    with pytest.raises(ValueError, match='3 frames for 4 boxes'):
        write_sequence(tmp_path / 'short', frames[:3], BOXES, absent=ABSENT)
    assert not (tmp_path / 'short').exists()
    with pytest.raises(ValueError, match='more frames than the 2 boxes'):
        write_sequence(tmp_path / 'long', iter(frames), BOXES[:2])
    assert not (tmp_path / 'long').exists()
    with pytest.raises(ValueError, match=r'boxes\[3\].*non-finite'):
        write_sequence(tmp_path / 'nan', frames, BOXES)   # NaN row without absent
    with pytest.raises(ValueError, match='cover values'):
        write_sequence(tmp_path / 'cover', frames, BOXES, absent=ABSENT, cover=[9, 0, 0, 0])
    with pytest.raises(ValueError, match='frame 1: expected RGB uint8'):
        write_sequence(tmp_path / 'grey', [frames[0], frames[1][..., 0]], BOXES[:2])
    with pytest.raises(ValueError, match='image_format'):
        write_sequence(tmp_path / 'bmp', frames, BOXES, absent=ABSENT, image_format='bmp')
    assert sorted(p.name for p in tmp_path.iterdir()) == []
    _written(tmp_path)
    with pytest.raises(FileExistsError):
        _written(tmp_path)


def _replace(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new, 1))


def _nan_on_present(folder: Path) -> None:
    (folder / 'absence.label').write_text('0\n0\n0\n0\n')


# (what, file named, 1-based line or None, breakage, text the message must hold)
MALFORMED = [
    ('nan box', 'groundtruth.txt', 4, _nan_on_present, 'non-finite'),
    ('not a number', 'groundtruth.txt', 2,
     lambda f: _replace(f / 'groundtruth.txt', '0.30000000000000004', 'abc'), "'abc'"),
    ('three fields', 'groundtruth.txt', 1,
     lambda f: _replace(f / 'groundtruth.txt', '1.5,', ''), 'expected 4 fields'),
    ('empty field', 'groundtruth.txt', 1,
     lambda f: _replace(f / 'groundtruth.txt', '1.5,', ','), "'' is not a number"),
    ('negative size', 'groundtruth.txt', 3,
     lambda f: _replace(f / 'groundtruth.txt', '0.0,0.0\n', '-1.0,0.0\n'), 'negative box size'),
    ('blank line inside', 'groundtruth.txt', 2,
     lambda f: _replace(f / 'groundtruth.txt', '\n', '\n\n'), 'blank line'),
    ('extra box', 'groundtruth.txt', None,
     lambda f: (f / 'groundtruth.txt').open('a').write('1,2,3,4\n'), '5 boxes for 4 frames'),
    ('absence value 2', 'absence.label', 3,
     lambda f: (f / 'absence.label').write_text('0\n0\n2\n1\n'), 'integer in 0..1'),
    ('cut not a number', 'cut_by_image.label', 2,
     lambda f: (f / 'cut_by_image.label').write_text('0\nyes\n1\n0\n'), "'yes'"),
    ('cover 9', 'cover.label', 1,
     lambda f: (f / 'cover.label').write_text('9\n5\n0\n0\n'), 'integer in 0..8'),
    ('cover fraction', 'cover.label', 2,
     lambda f: (f / 'cover.label').write_text('8\n4.5\n0\n0\n'), 'integer in 0..8'),
    ('two values on a line', 'cover.label', 2,
     lambda f: (f / 'cover.label').write_text('8\n4 4\n0\n0\n'), 'expected one value'),
    ('label count', 'cover.label', None,
     lambda f: (f / 'cover.label').write_text('8\n5\n0\n'), '3 values for 4 frames'),
    ('missing middle frame', '00000002.png', None,
     lambda f: (f / '00000002.png').unlink(), 'frame missing'),
    ('missing last frame', 'groundtruth.txt', None,
     lambda f: (f / '00000004.png').unlink(), '4 boxes for 3 frames'),
    ('no groundtruth', 'seq', None,
     lambda f: (f / 'groundtruth.txt').unlink(), 'no groundtruth file'),
    ('no frames', 'seq', None,
     lambda f: [p.unlink() for p in f.glob('*.png')], 'no frames'),
    ('not text', 'groundtruth.txt', None,
     lambda f: (f / 'groundtruth.txt').write_bytes(b'\xff\xfe1,2\n'), 'not UTF-8'),
]


@pytest.mark.parametrize('what, file, line, breakage, message', MALFORMED,
                         ids=[case[0] for case in MALFORMED])
def test_malformed_file_is_named_with_its_line(tmp_path, what, file, line, breakage, message):
    folder = _written(tmp_path).path
    breakage(folder)
    with pytest.raises(SequenceFormatError) as caught:
        read_sequence(folder)
    error = caught.value
    assert error.path.name == file and error.line == line
    where = f'{folder / file}:{line}: ' if line else f'{error.path}: '
    assert str(error).startswith(where), str(error)
    assert message in str(error)


def test_separators_crlf_bom_and_trailing_blank_lines(tmp_path):
    groundtruth = ('\ufeff1,2,3,4\r\n5\t6\t7\t8\r\n 9 10  11 12 \r\n13, 14,15 ,16\r\n'
                   '17\t18 19,20\r\n\r\n \r\n')
    folder = _write_raw(tmp_path / 'seq', [f'{i:08d}.jpg' for i in range(1, 6)], groundtruth,
                        absence__label='0\r\n0\r\n1\r\n0\r\n0\r\n\r\n')
    sequence = read_sequence(folder)
    np.testing.assert_array_equal(sequence.boxes, np.arange(1, 21).reshape(5, 4))
    assert sequence.absent.tolist() == [False, False, True, False, False]


def test_absent_frames_may_hold_nan_or_negative_boxes(tmp_path):
    folder = _write_raw(tmp_path / 'seq', ['1.png', '2.png', '3.png'],
                        '1,2,3,4\nnan,nan,nan,nan\n0,0,-1,-1\n', absence__label='0\n1\n1\n')
    sequence = read_sequence(folder)
    assert np.isnan(sequence.boxes[1]).all() and sequence.boxes[2, 2] == -1


def test_natural_frame_order_mvtd_names(tmp_path):
    names = [f'frame{i}.jpg' for i in range(1, 13)]
    folder = _write_raw(tmp_path / 'seq', names[::-1], '\n'.join(['0,0,1,1'] * 12))
    sequence = read_sequence(folder)
    assert [f.name for f in sequence.frame_files] == names
    # _write_raw gave the k-th written name (reverse order) pixel value k.
    assert [int(sequence.frame(i)[0, 0, 0]) for i in (0, 1, 11)] == [11, 10, 0]


def test_frames_are_read_lazily(tmp_path, monkeypatch):
    _written(tmp_path)
    calls = []
    real_imread = cv2.imread
    monkeypatch.setattr(cv2, 'imread', lambda *args: calls.append(args[0]) or real_imread(*args))
    sequence = read_sequence(tmp_path / 'seq')
    assert calls == []
    sequence.frame(2)
    assert [Path(c).name for c in calls] == ['00000003.png']


def test_deleted_or_corrupt_frame_fails_only_when_read(tmp_path):
    sequence = _written(tmp_path)
    sequence.frame_files[1].unlink()
    sequence.frame_files[2].write_bytes(b'not an image at all')
    sequence.frame(0)
    with pytest.raises(SequenceFormatError, match=r'00000002\.png: frame 1 is missing'):
        sequence.frame(1)
    with pytest.raises(SequenceFormatError, match=r'00000003\.png: frame 2 is unreadable'):
        sequence.frame(2)
    sequence.frame(3)


def _dataset(root: Path, names: Iterable[str]) -> None:
    for name in names:
        _write_raw(root / name, ['00000001.jpg'], '0,0,1,1\n')


def test_root_subfolders_natural_sorted_or_list_txt(tmp_path):
    _dataset(tmp_path, ['b', 'a10', 'a2'])
    (tmp_path / 'not_a_sequence').mkdir()
    (tmp_path / '.hidden').mkdir()
    assert [p.name for p in list_sequences(tmp_path)] == ['a2', 'a10', 'b']
    (tmp_path / 'list.txt').write_text('b\r\na10\r\n\r\n')
    assert [p.name for p in list_sequences(tmp_path)] == ['b', 'a10']
    assert [s.name for s in read_dataset(tmp_path)] == ['b', 'a10']
    (tmp_path / 'list.txt').write_text('b\nnot_a_sequence\n')
    with pytest.raises(SequenceFormatError, match=r"list\.txt:2: 'not_a_sequence'"):
        list_sequences(tmp_path)


def test_splits(tmp_path):
    _dataset(tmp_path / 'train', ['GOT-10k_Train_000002', 'GOT-10k_Train_000001'])
    (tmp_path / 'train' / 'list.txt').write_text('GOT-10k_Train_000002\n')
    _dataset(tmp_path / 'val', ['GOT-10k_Val_000001'])
    assert [p.name for p in list_sequences(tmp_path, 'train')] == ['GOT-10k_Train_000002']
    assert [p.name for p in list_sequences(tmp_path, 'val')] == ['GOT-10k_Val_000001']
    assert [p.name for p in list_sequences(tmp_path)] == ['GOT-10k_Train_000002',
                                                          'GOT-10k_Val_000001']
    with pytest.raises(FileNotFoundError, match='test'):
        list_sequences(tmp_path, 'test')


def test_lasot_style(tmp_path):
    folder = tmp_path / 'airplane' / 'airplane-1'
    _write_raw(folder, [f'img/{i:08d}.jpg' for i in range(1, 5)],
               '1,2,3,4\n1,2,3,4\n0,0,0,0\n0,0,0,0\n',
               full_occlusion__txt='0,0,1,0', out_of_view__txt='0,0,0,1\n')
    (tmp_path / 'airplane' / 'airplane-1' / 'nlp.txt').write_text('white airplane\n')
    [path] = list_sequences(tmp_path)
    sequence = read_sequence(path)
    assert sequence.name == 'airplane-1' and len(sequence) == 4
    assert sequence.frame_files[0].parent.name == 'img'
    assert sequence.absent.tolist() == [False, False, True, True]
    (folder / 'out_of_view.txt').write_text('0,0,0,3')
    with pytest.raises(SequenceFormatError, match=r'out_of_view\.txt:1: .*0\.\.1'):
        read_sequence(folder)


def test_otb_style(tmp_path):
    folder = _write_raw(tmp_path / 'Basketball', [f'img/{i:04d}.jpg' for i in range(1, 4)],
                        '198\t214\t34\t81\n197\t214\t34\t81\n195,214,34,81\n',
                        groundtruth_name='groundtruth_rect.txt')
    sequence = read_sequence(folder)
    assert sequence.boxes[2].tolist() == [195, 214, 34, 81] and sequence.absent is None
    assert [p.name for p in list_sequences(tmp_path)] == ['Basketball']


def test_sequence_checks_its_shapes(tmp_path):
    files = (tmp_path / 'a.png', tmp_path / 'b.png')
    with pytest.raises(ValueError, match='boxes must be 2 x 4'):
        Sequence('s', tmp_path, files, np.zeros((3, 4)))
    with pytest.raises(ValueError, match='cover must hold 2'):
        Sequence('s', tmp_path, files, np.zeros((2, 4)), cover=np.zeros(3, int))
    boxes = np.zeros((2, 4))
    sequence = Sequence('s', tmp_path, files, boxes)
    assert repr(sequence).endswith('frames=2)')
    boxes[0, 0] = 5.0                               # the caller's array stays writable
    assert sequence.boxes[0, 0] == 5.0 and not sequence.boxes.flags.writeable


def test_missing_folder(tmp_path):
    with pytest.raises(FileNotFoundError):
        read_sequence(tmp_path / 'nope')
    with pytest.raises(FileNotFoundError):
        list_sequences(tmp_path / 'nope')
