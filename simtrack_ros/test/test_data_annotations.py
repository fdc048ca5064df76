"""annotations.jsonl: record validation, both label views, merging, the reader and the writer."""
from __future__ import annotations

import json
import logging
import os
from pathlib import Path
import signal
import subprocess
import sys
import textwrap
import time
from typing import List

import numpy as np
import pytest

from simtrack_ros.challenges import CHALLENGE_NAMES
from simtrack_ros.data.annotations import (
    AnnotationWriter, Flag, FrameRecord, merge_flags, read_annotations, RECORD_VERSION,
    response_flags)


def record(index: int = 0, **changes) -> FrameRecord:
    fields = {
        'sequence_name': 'seq_0001', 'frame_file': f'{index + 1:08d}.jpg', 'frame_index': index,
        'template_bbox': [10, 20, 50, 60], 'ground_truth_bbox': [12.5, 21, 55, 70],
        'vlm_response': {'motion_blur': {'flag': 0, 'confidence': 0.2},
                         'occlusion': {'flag': 1, 'confidence': 0.9}},
        'cv_response': {'low_resolution': 1, 'scale_variation': 0},
        'flags': {'occlusion': Flag(True, 'vlm', 0.9), 'low_resolution': Flag(True, 'cv'),
                  'scale_variation': Flag(False, 'cv'), 'motion_blur': Flag(False, 'vlm', 0.2)},
        'visible_ratio': 0.5}
    fields.update(changes)
    return FrameRecord(**fields)


def line_of(rec: FrameRecord, **changes) -> str:
    value = rec.to_dict()
    value.update(changes)
    return json.dumps(value)


def test_record_round_trips_through_one_json_line():
    rec = record()
    text = rec.to_json()
    assert '\n' not in text
    assert FrameRecord.from_json(text) == rec
    value = json.loads(text)
    assert value['version'] == RECORD_VERSION
    assert value['template_bbox'] == [10.0, 20.0, 50.0, 60.0]
    assert value['flags']['occlusion'] == {'flag': 1, 'source': 'vlm', 'confidence': 0.9}
    assert value['flags']['low_resolution'] == {'flag': 1, 'source': 'cv', 'confidence': None}


def test_guide_keys_are_read_and_canonical_names_written():
    rec = record(vlm_response={'illu_change': {'flag': 1, 'confidence': 0.7}},
                 cv_response={'low_res': 0, 'low_contrast': 1},
                 flags={'variance_appear': Flag(True, 'human')})
    value = json.loads(rec.to_json())
    assert value['vlm_response'] == {'illumination_change': {'flag': 1, 'confidence': 0.7}}
    assert value['cv_response'] == {'low_resolution': 0, 'low_contrast_object': 1}
    assert list(value['flags']) == ['variance_in_appearance']
    read = FrameRecord.from_json(line_of(rec, flags={'low_res': {'flag': 1, 'source': 'cv'}}))
    assert read.flags == {'low_resolution': Flag(True, 'cv', None)}


@pytest.mark.parametrize('changes, message', [
    ({'frame_index': -1}, 'frame_index: expected an integer >= 0'),
    ({'frame_index': 1.0}, 'frame_index: expected an integer'),
    ({'frame_index': True}, 'frame_index: expected an integer'),
    ({'sequence_name': ''}, 'sequence_name: expected a non-empty string'),
    ({'frame_file': 3}, 'frame_file: expected a non-empty string'),
    ({'template_bbox': [0, 0, 0, 10]}, r'template_bbox: needs x2 > x1 and y2 > y1'),
    ({'template_bbox': [0, 0, 10]}, r'template_bbox: expected 4 numbers'),
    ({'template_bbox': None}, r'template_bbox: expected \[x1, y1, x2, y2\]'),
    ({'template_bbox': [0, 0, 'a', 10]}, r'template_bbox: expected 4 numbers'),
    ({'ground_truth_bbox': [0, 10, 5, 2]}, r'ground_truth_bbox: needs x2 > x1 and y2 > y1'),
    ({'vlm_response': {'occlusion': {'flag': 2, 'confidence': 0.5}}},
     'vlm_response.occlusion.flag: expected 0 or 1'),
    ({'vlm_response': {'occlusion': {'flag': 1, 'confidence': 1.5}}},
     r'vlm_response.occlusion.confidence: 1.5 is outside \[0, 1\]'),
    ({'vlm_response': {'occlusion': {'flag': 1}}}, 'vlm_response.occlusion: expected'),
    ({'vlm_response': {'fog': {'flag': 1, 'confidence': 0.5}}},
     "vlm_response: unknown challenge class 'fog'"),
    ({'vlm_response': [1, 0]}, 'vlm_response: expected an object keyed by class'),
    ({'cv_response': {'low_res': 0.5}}, 'cv_response.low_resolution: expected 0 or 1'),
    ({'cv_response': {'low_res': 1, 'low_resolution': 0}},
     "cv_response: class 'low_resolution' given twice"),
    ({'flags': {'occlusion': {'flag': 1, 'source': 'oracle'}}},
     "flags.occlusion.source: 'oracle' is not one of"),
    ({'flags': {'occlusion': {'flag': 1, 'source': 'vlm', 'confidence': -0.1}}},
     r'flags.occlusion.confidence: -0.1 is outside \[0, 1\]'),
    ({'flags': {'occlusion': {'flag': 1}}}, 'flags.occlusion.source: missing'),
    ({'flags': {'occlusion': {'flag': 1, 'source': 'cv', 'why': 'x'}}},
     r"flags.occlusion: unknown keys \['why'\]"),
    ({'flags': {'normal': {'flag': 1, 'source': 'cv'}}}, "flags: 'normal' is not a flag"),
    ({'visible_ratio': 1.2}, r'visible_ratio: 1.2 is outside \[0, 1\]'),
    ({'visible_ratio': '1'}, r'visible_ratio: expected a number'),
    ({'version': 2}, 'version: 2 is not supported'),
    ({'colour': 'red'}, r"unknown fields \['colour'\]"),
])
def test_every_field_is_validated_with_its_name(changes, message):
    with pytest.raises(ValueError, match=message):
        FrameRecord.from_json(line_of(record(), **changes))


@pytest.mark.parametrize('text, message', [
    ('{"version": 1, "frame_index": NaN}', 'invalid JSON: NaN is not allowed'),
    ('{"version": 1, "version": 1}', "invalid JSON: key 'version' appears twice"),
    ('{"version": 1,', 'invalid JSON: '),
    ('[1, 2]', 'expected a JSON object, got list'),
    ('{"version": 1, "sequence_name": "s"}', r"missing fields \['frame_file'"),
    (line_of(record()).replace('"version": 1, ', ''), r"missing fields \['version'\]"),
])
def test_malformed_lines_say_why(text, message):
    with pytest.raises(ValueError, match=message):
        FrameRecord.from_json(text)


def test_boxes_must_be_finite():
    overflow = record().to_json().replace('[10.0, 20.0, 50.0, 60.0]', '[10, 20, 1e400, 60]')
    with pytest.raises(ValueError, match=r'template_bbox: coordinates must be finite'):
        FrameRecord.from_json(overflow)
    with pytest.raises(ValueError, match=r'ground_truth_bbox: coordinates must be finite'):
        record(ground_truth_bbox=np.array([0.0, 0.0, np.nan, 4.0]))


def test_python_construction_is_validated_too():
    with pytest.raises(ValueError, match="source: 'gpt' is not one of"):
        Flag(True, 'gpt')
    with pytest.raises(ValueError, match='flag: expected 0 or 1'):
        Flag(2, 'cv')
    assert record(frame_index=np.int64(3)).frame_index == 3


def test_single_label_uses_the_priority_rule_and_multi_label_keeps_every_class():
    rec = record()
    assert rec.active() == ('occlusion', 'low_resolution')
    assert rec.single_label() == 'occlusion'
    assert rec.single_label(('low_resolution', 'occlusion')) == 'low_resolution'
    vector = rec.multi_label()
    assert vector.dtype == np.float32 and vector.shape == (len(CHALLENGE_NAMES),)
    on = [CHALLENGE_NAMES[i] for i in np.flatnonzero(vector)]
    assert on == ['occlusion', 'low_resolution']
    quiet = record(flags={'motion_blur': Flag(False, 'cv')})
    assert quiet.active() == () and quiet.single_label() == 'normal'
    assert quiet.multi_label()[CHALLENGE_NAMES.index('normal')] == 1.0
    assert quiet.multi_label().sum() == 1.0


def test_judged_mask_marks_what_was_judged():
    rec = record()
    mask = rec.judged_mask()
    judged = [CHALLENGE_NAMES[i] for i in np.flatnonzero(mask)]
    assert judged == ['motion_blur', 'scale_variation', 'occlusion', 'low_resolution', 'normal']
    partial = record(flags={'motion_blur': Flag(False, 'cv')})
    assert partial.judged_mask()[CHALLENGE_NAMES.index('normal')] == 0.0
    every = record(flags={name: Flag(False, 'synthetic') for name in CHALLENGE_NAMES[:-1]})
    assert every.judged_mask().sum() == len(CHALLENGE_NAMES)


def test_merge_flags_follows_source_precedence():
    cv = {'occlusion': Flag(False, 'cv'), 'low_res': Flag(True, 'cv'),
          'motion_blur': Flag(True, 'cv')}
    vlm = {'occlusion': Flag(True, 'vlm', 0.8), 'motion_blur': Flag(False, 'vlm', 0.6)}
    dataset = {'occlusion': Flag(False, 'dataset')}
    human = {'motion_blur': Flag(True, 'human')}
    merged = merge_flags(human, dataset, vlm, cv)
    assert merged == {'motion_blur': Flag(True, 'human'), 'occlusion': Flag(False, 'dataset'),
                      'low_resolution': Flag(True, 'cv')}
    assert list(merged) == ['motion_blur', 'occlusion', 'low_resolution']
    assert merge_flags(cv, vlm) == merge_flags(vlm, cv)
    later = merge_flags({'occlusion': Flag(False, 'vlm', 0.3)}, {'occlusion': Flag(True, 'vlm')})
    assert later == {'occlusion': Flag(True, 'vlm')}


def test_response_flags_take_vlm_over_cv_and_ignore_normal():
    flags = response_flags({'occlusion': {'flag': 1, 'confidence': 0.6},
                            'normal': {'flag': 0, 'confidence': 0.9}},
                           {'occlusion': 0, 'low_res': 1})
    assert flags == {'occlusion': Flag(True, 'vlm', 0.6), 'low_resolution': Flag(True, 'cv')}
    assert response_flags(None, None) == {}


def test_a_design_guide_file_is_read_with_derived_flags(tmp_path):
    guide = [
        {'sequence_name': '1-Boat', 'frame_file': 'img0001.jpg',
         'template_bbox': [1, 2, 30, 40], 'ground_truth_bbox': [2, 3, 31, 41],
         'vlm_response': {'motion_blur': {'flag': 0, 'confidence': 0.2},
                          'illu_change': {'flag': 1, 'confidence': 0.8}},
         'cv_response': {'scale_variation': 0, 'low_res': 1, 'illu_change': 0}},
        {'sequence_name': '1-Boat', 'frame_file': 'img0002.jpg',
         'template_bbox': [1, 2, 30, 40], 'ground_truth_bbox': [4, 3, 33, 41],
         'vlm_response': {'motion_blur': {'flag': 0, 'confidence': 0.1}},
         'cv_response': {'low_res': 0}},
    ]
    path = tmp_path / 'annotations.jsonl'
    path.write_text(''.join(json.dumps(item) + '\n' for item in guide))
    result = read_annotations(path)
    assert result.errors == []
    first, second = result.records
    assert (first.frame_index, second.frame_index) == (0, 1)
    assert first.version == RECORD_VERSION
    assert first.flags == {'motion_blur': Flag(False, 'vlm', 0.2),
                           'illumination_change': Flag(True, 'vlm', 0.8),
                           'scale_variation': Flag(False, 'cv'),
                           'low_resolution': Flag(True, 'cv')}
    assert first.single_label() == 'illumination_change'
    assert second.single_label() == 'normal'
    assert FrameRecord.from_json(first.to_json()) == first


def test_reader_keeps_good_lines_and_reports_bad_ones_by_line(tmp_path):
    lines = [
        record(0).to_json(),                                   # 1 ok
        '{"version": 1, "frame_index": ',                      # 2 invalid JSON
        '',                                                    # 3 blank: ignored
        line_of(record(1), visible_ratio=3),                   # 4 schema error
        record(2).to_json(),                                   # 5 ok, superseded by line 8
        '   ',                                                 # 6 blank: ignored
        line_of(record(3), sequence_name='other'),             # 7 another sequence
        record(2, visible_ratio=0.25).to_json(),               # 8 ok, wins over line 5
    ]
    path = tmp_path / 'annotations.jsonl'
    path.write_bytes(('\r\n'.join(lines) + '\r\n').encode() + b'\xff\xfe\n' + b'{"torn')
    result = read_annotations(path)
    assert [r.frame_index for r in result.records] == [0, 2]
    assert result.records[1].visible_ratio == 0.25
    numbers = [number for number, _ in result.errors]
    assert numbers == [2, 4, 5, 7, 9, 10]
    reasons = dict(result.errors)
    assert reasons[2].startswith('invalid JSON')
    assert reasons[4].startswith('visible_ratio: 3 is outside [0, 1]')
    assert reasons[5] == 'frame_index 2 appears again on line 8; the later line wins'
    assert "sequence_name 'other' differs from 'seq_0001' on line 1" in reasons[7]
    assert 'utf-8' in reasons[9]
    assert reasons[10].endswith('(last line has no newline: a write cut short?)')


def test_writer_appends_whole_lines_and_refuses_duplicates(tmp_path):
    path = tmp_path / 'annotations.jsonl'
    with AnnotationWriter(path) as writer:
        assert writer.done_frames() == set() and writer.torn_bytes == 0
        writer.write(record(0))
        writer.write(record(4))
        with pytest.raises(ValueError, match='frame_index 4 is already written'):
            writer.write(record(4))
        with pytest.raises(ValueError, match="holds sequence 'seq_0001', not 'b'"):
            writer.write(record(5, sequence_name='b'))
    with pytest.raises(ValueError, match='writer is closed'):
        writer.write(record(6))
    with AnnotationWriter(path) as writer:
        assert writer.done_frames() == {0, 4}
        writer.write(record(1))
        with pytest.raises(ValueError, match='frame_index 0 is already written'):
            writer.write(record(0))
    data = path.read_bytes()
    assert data.endswith(b'\n') and data.count(b'\n') == 3
    result = read_annotations(path)
    assert result.errors == [] and [r.frame_index for r in result.records] == [0, 1, 4]
    assert result.records[0] == record(0)


def test_a_second_writer_on_the_same_file_is_refused(tmp_path):
    path = tmp_path / 'annotations.jsonl'
    with AnnotationWriter(path):
        with pytest.raises(OSError, match='another writer has it open'):
            AnnotationWriter(path)
    AnnotationWriter(path).close()


def test_writer_truncates_a_torn_last_line_on_open(tmp_path, caplog):
    path = tmp_path / 'annotations.jsonl'
    with AnnotationWriter(path) as writer:
        writer.write(record(0))
    whole = path.read_bytes()
    torn = record(1).to_json().encode()[:37]
    path.write_bytes(whole + torn)
    with caplog.at_level(logging.WARNING, logger='simtrack_ros.data.annotations'):
        writer = AnnotationWriter(path)
    assert writer.torn_bytes == len(torn)
    assert 'removed a torn last line (37 bytes' in caplog.text
    assert path.read_bytes() == whole
    assert writer.done_frames() == {0} and writer.errors == []
    writer.write(record(1))
    writer.close()
    result = read_annotations(path)
    assert result.errors == [] and [r.frame_index for r in result.records] == [0, 1]


def test_writer_reports_bad_lines_found_on_open(tmp_path):
    path = tmp_path / 'annotations.jsonl'
    path.write_text(record(0).to_json() + '\nnot json\n')
    with AnnotationWriter(path) as writer:
        assert writer.done_frames() == {0}
        assert [number for number, _ in writer.errors] == [2]


CHILD = textwrap.dedent("""
    import sys
    from simtrack_ros.data.annotations import AnnotationWriter, Flag, FrameRecord
    writer = AnnotationWriter(sys.argv[1])
    done = writer.done_frames()
    for index in range(100000):
        if index in done:
            continue
        writer.write(FrameRecord(
            'seq_0001', f'{index + 1:08d}.jpg', index, [0, 0, 10, 10],
            cv_response={'low_res': index % 2}, flags={'low_res': Flag(index % 2, 'cv')},
            visible_ratio=(index % 9) / 8))
        print(index, flush=True)
""")


def run_and_kill(path: Path, reported: int) -> List[int]:
    """Run CHILD on ``path``, SIGKILL it after ``reported`` more written frames; return them."""
    child = subprocess.Popen([sys.executable, '-c', CHILD, str(path)], stdout=subprocess.PIPE,
                             text=True)
    written: List[int] = []
    deadline = time.monotonic() + 60
    try:
        while len(written) < reported and time.monotonic() < deadline:
            line = child.stdout.readline()
            if not line:
                break
            written.append(int(line))
    finally:
        os.kill(child.pid, signal.SIGKILL)
        written += [int(line) for line in child.stdout.read().split()]
        child.wait(timeout=10)
    assert child.returncode == -signal.SIGKILL
    assert len(written) >= reported, 'the child did not write as many records as asked'
    return written


def test_a_run_killed_with_sigkill_resumes_without_torn_lines_duplicates_or_losses(tmp_path):
    path = tmp_path / 'annotations.jsonl'
    reported = run_and_kill(path, 40)
    reported += run_and_kill(path, 40)
    assert len(set(reported)) == len(reported), 'a resumed run wrote a frame again'
    with AnnotationWriter(path) as writer:
        assert writer.errors == []
        done = writer.done_frames()
        assert set(reported) <= done
        assert done == set(range(len(done)))
        for index in range(len(done), len(done) + 5):
            writer.write(FrameRecord('seq_0001', f'{index + 1:08d}.jpg', index, [0, 0, 10, 10]))
    data = path.read_bytes()
    assert data.endswith(b'\n')
    result = read_annotations(path)
    assert result.errors == []
    indexes = [r.frame_index for r in result.records]
    assert indexes == list(range(len(done) + 5))
    assert data.count(b'\n') == len(indexes)
