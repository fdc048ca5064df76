"""Free labels from a dataset's own files: the visibility table and OTB's two box rules."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from simtrack_ros.data.annotations import Flag, FrameRecord, merge_flags
from simtrack_ros.data.dataset_labels import (
    low_resolution, scale_variation, sequence_labels, visibility_labels)
from simtrack_ros.data.sequences import read_sequence, Sequence, write_sequence


def on_off(flags):
    assert all(flag.source == 'dataset' and flag.confidence is None for flag in flags.values())
    return {name: int(flag.flag) for name, flag in flags.items()}


def make_sequence(boxes, absent=None, cut_by_image=None, cover=None) -> Sequence:
    boxes = np.asarray(boxes, np.float64)
    files = tuple(Path(f'/nowhere/{i + 1:08d}.jpg') for i in range(len(boxes)))
    arrays = [None if values is None else np.asarray(values, dtype)
              for values, dtype in ((absent, bool), (cut_by_image, bool), (cover, np.int64))]
    return Sequence('seq', Path('/nowhere'), files, boxes, *arrays)


@pytest.mark.parametrize('absent, cut, cover, flags, ratio', [
    (1, 0, 0, {'occlusion': 1}, 0.0),
    (1, 1, 3, {'occlusion': 1}, 0.0),
    (0, 1, 5, {'partial_visibility': 1}, 0.625),
    (None, 1, None, {'partial_visibility': 1}, None),
    (0, 0, 3, {'partial_visibility': 0, 'occlusion': 1}, 0.375),
    (0, 0, 0, {'partial_visibility': 0, 'occlusion': 1}, 0.0),
    (0, 0, 8, {'partial_visibility': 0, 'occlusion': 0}, 1.0),
    (None, None, 8, {'partial_visibility': 0, 'occlusion': 0}, 1.0),
    (0, 0, None, {'partial_visibility': 0}, None),
    (0, None, 5, {}, 0.625),
    (0, None, None, {}, None),
    (None, None, None, {}, None),
])
def test_visibility_table(absent, cut, cover, flags, ratio):
    labels = visibility_labels(absent, cut, cover)
    assert on_off(labels.flags) == flags
    assert labels.visible_ratio == ratio


def test_cover_outside_its_range_is_refused():
    with pytest.raises(ValueError, match=r'cover must be in 0..8, got 9'):
        visibility_labels(0, 0, 9)


def test_otb_scale_variation_is_an_area_ratio_outside_half_to_double():
    first = (0, 0, 20, 20)                      # area 400
    assert not scale_variation((5, 5, 40, 20), first)        # ratio 2: inside
    assert scale_variation((5, 5, 40, 20.2), first)          # ratio 2.02
    assert not scale_variation((5, 5, 10, 20), first)        # ratio 1/2: inside
    assert scale_variation((5, 5, 10, 19.8), first)          # ratio 0.495
    assert not scale_variation((5, 5, 40, 20.2), first, scale_ratio=3)
    assert scale_variation((0, 0, 15, 20), first, scale_ratio=1.2)
    with pytest.raises(ValueError, match='scale_ratio must be > 1'):
        scale_variation(first, first, scale_ratio=1)
    with pytest.raises(ValueError, match='needs two valid boxes'):
        scale_variation((0, 0, 0, 10), first)


def test_otb_low_resolution_is_an_area_under_400_pixels():
    assert low_resolution((0, 0, 19.9, 20))
    assert not low_resolution((0, 0, 20, 20))
    assert not low_resolution((0, 0, 19.9, 20), min_area=100)
    with pytest.raises(ValueError, match='needs a valid box'):
        low_resolution((0, 0, float('nan'), 20))


def test_sequence_labels_combine_visibility_and_box_rules():
    seq = make_sequence(
        boxes=[[0, 0, 0, 0], [10, 10, 20, 20], [10, 10, 30, 30], [0, 0, 10, 10],
               [np.nan] * 4, [5, 5, 19, 21]],
        absent=[1, 0, 0, 0, 1, 0], cut_by_image=[0, 0, 1, 0, 0, 0], cover=[0, 8, 6, 2, 0, 8])
    labels = sequence_labels(seq)
    assert len(labels) == len(seq)
    got = [(on_off(frame.flags), frame.visible_ratio) for frame in labels]
    # frame 1 is the first present frame with a valid box: the reference area (400)
    assert got == [
        ({'occlusion': 1}, 0.0),
        ({'partial_visibility': 0, 'occlusion': 0, 'scale_variation': 0, 'low_resolution': 0},
         1.0),
        ({'partial_visibility': 1, 'scale_variation': 1, 'low_resolution': 0}, 0.75),
        ({'partial_visibility': 0, 'occlusion': 1, 'scale_variation': 1, 'low_resolution': 1},
         0.25),
        ({'occlusion': 1}, 0.0),
        ({'partial_visibility': 0, 'occlusion': 0, 'scale_variation': 0, 'low_resolution': 1},
         1.0),
    ]


def test_thresholds_are_options():
    seq = make_sequence(boxes=[[0, 0, 20, 20], [0, 0, 30, 30], [0, 0, 12, 12]])
    default = [on_off(frame.flags) for frame in sequence_labels(seq)]
    assert default == [{'scale_variation': 0, 'low_resolution': 0},
                       {'scale_variation': 1, 'low_resolution': 0},
                       {'scale_variation': 1, 'low_resolution': 1}]
    loose = [on_off(frame.flags) for frame in sequence_labels(seq, scale_ratio=3, min_area=100)]
    assert loose == [{'scale_variation': 0, 'low_resolution': 0}] * 3
    assert all(frame.visible_ratio is None for frame in sequence_labels(seq))


def test_a_sequence_with_no_valid_box_gets_visibility_only():
    seq = make_sequence(boxes=[[np.nan] * 4] * 2, absent=[1, 1])
    assert [on_off(frame.flags) for frame in sequence_labels(seq)] == [{'occlusion': 1}] * 2


def test_labels_of_a_written_sequence_make_valid_records(tmp_path):
    frames = [np.full((48, 64, 3), 40 * i, np.uint8) for i in range(4)]
    boxes = [[4, 4, 20, 20], [0, 0, 0, 0], [30, 10, 34, 30], [10, 10, 20, 10]]
    written = write_sequence(tmp_path / 'seq_0001', frames, boxes, absent=[0, 1, 0, 0],
                             cut_by_image=[0, 0, 1, 0], cover=[8, 0, 4, 5])
    seq = read_sequence(written.path)
    labels = sequence_labels(seq)
    records = []
    for index, frame in enumerate(labels):
        x, y, w, h = seq.boxes[index]
        flags = merge_flags({'occlusion': Flag(False, 'vlm', 0.9)}, frame.flags)
        records.append(FrameRecord(
            seq.name, seq.frame_files[index].name, index, [4, 4, 24, 24],
            None if seq.absent[index] else [x, y, x + w, y + h], flags=flags,
            visible_ratio=frame.visible_ratio))
    assert [r.single_label() for r in records] == [
        'normal', 'occlusion', 'partial_visibility', 'occlusion']
    assert [r.visible_ratio for r in records] == [1.0, 0.0, 0.5, 0.625]
    assert records[0].flags['occlusion'] == Flag(False, 'dataset')
    assert records[2].flags['occlusion'] == Flag(False, 'vlm', 0.9)
    assert records[2].active() == ('scale_variation', 'partial_visibility')
    assert records[3].active() == ('occlusion', 'low_resolution')
    assert FrameRecord.from_json(records[3].to_json()) == records[3]
