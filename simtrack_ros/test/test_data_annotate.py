"""simtrack-annotate: records from every source, resumable after a kill, summary and agreement."""
from __future__ import annotations

import json
import os
from pathlib import Path
import signal
import subprocess
import sys
import time
from typing import List

from fake_vlm_server import answer_text, FakeVlmServer, Reply
import numpy as np
import pytest

from simtrack_ros.data.annotate import annotate_sequence, AnnotateOptions, main
from simtrack_ros.data.annotation_summary import cohen_kappa, summarize
from simtrack_ros.data.annotations import read_annotations
from simtrack_ros.data.sequences import read_sequence, write_sequence
from simtrack_ros.data.synthetic_sea import render_sea_frame
from simtrack_ros.data.vlm_annotator import VlmConfig

WIDTH, HEIGHT = 160, 120


def _sequence(root: Path, name: str, frames: int = 12, seed: int = 0) -> Path:
    """Write a sea sequence whose frame 3 is absent, 4 cut by the image, 5 half covered."""
    images, boxes = [], []
    for index in range(frames):
        image, box = render_sea_frame(index / 10, WIDTH, HEIGHT, seed)
        images.append(image)
        boxes.append(box)
    absent = np.zeros(frames, bool)
    absent[3] = True
    cut = np.zeros(frames, bool)
    cut[4] = True
    cover = np.full(frames, 8)
    cover[3], cover[4], cover[5] = 0, 5, 4
    write_sequence(root / name, images, np.asarray(boxes), absent=absent, cut_by_image=cut,
                   cover=cover, image_format='png')
    return root / name


def test_records_from_dataset_and_cv(tmp_path):
    sequence = read_sequence(_sequence(tmp_path, 'seq_a'))
    report = annotate_sequence(sequence, AnnotateOptions(sources=('dataset', 'cv')))
    assert (report.selected, report.written, report.skipped, report.error) == (12, 12, 0, '')
    result = read_annotations(sequence.path / 'annotations.jsonl')
    assert result.errors == [] and [r.frame_index for r in result.records] == list(range(12))
    first, absent, cut, covered = (result.records[i] for i in (0, 3, 4, 5))
    assert first.frame_file == '00000001.png' and first.vlm_response is None
    x, y, w, h = sequence.boxes[0]
    assert first.template_bbox == pytest.approx((x, y, x + w, y + h))
    assert first.cv_response is not None and set(first.cv_response) >= {'motion_blur'}
    assert absent.ground_truth_bbox is None and absent.cv_response is None
    assert absent.flags['occlusion'].flag and absent.visible_ratio == 0.0
    assert cut.flags['partial_visibility'] == cut.flags['partial_visibility'].__class__(
        True, 'dataset')
    assert covered.flags['occlusion'].flag and covered.visible_ratio == 0.5
    assert covered.flags['occlusion'].source == 'dataset'
    assert {f.source for r in result.records for f in r.flags.values()} == {'dataset', 'cv'}
    again = annotate_sequence(sequence, AnnotateOptions(sources=('dataset', 'cv')))
    assert (again.written, again.skipped) == (0, 12)                 # nothing twice


def test_every_nth_frame_and_option_checks(tmp_path):
    sequence = read_sequence(_sequence(tmp_path, 'seq_b'))
    annotate_sequence(sequence, AnnotateOptions(sources=('dataset',), every=5,
                                                output='every5.jsonl'))
    records = read_annotations(sequence.path / 'every5.jsonl').records
    assert [r.frame_index for r in records] == [0, 5, 10]
    assert all(r.cv_response is None and r.vlm_response is None for r in records)
    with pytest.raises(ValueError, match='needs an endpoint'):
        AnnotateOptions(sources=('vlm',))
    with pytest.raises(ValueError, match='subset'):
        AnnotateOptions(sources=('oracle',))
    with pytest.raises(ValueError, match='file name'):
        AnnotateOptions(output='../elsewhere.jsonl')


def test_vlm_answers_failures_and_retries_are_recorded(tmp_path):
    sequence = read_sequence(_sequence(tmp_path, 'seq_v', frames=6))
    occluded = answer_text(on=('occlusion',))
    script = [Reply(status=500), Reply(content=occluded),            # frame: retried, then ok
              Reply(content='not json at all')] * 2
    with FakeVlmServer(script, default=Reply(content=answer_text())) as server:
        config = VlmConfig(url=server.url, model='fake', timeout_s=2.0, max_retries=1,
                           backoff_s=0.01, concurrency=1)
        report = annotate_sequence(sequence, AnnotateOptions(sources=('vlm',), vlm=config))
    records = read_annotations(sequence.path / 'annotations.jsonl').records
    written = {r.frame_index: r for r in records}
    assert report.vlm_failed >= 1 and report.written + report.vlm_failed == 6
    assert len(written) == report.written and written[3].vlm_response is None  # absent: not asked
    judged = [r for i, r in written.items() if i != 3]
    assert judged and all(r.vlm_response is not None for r in judged)     # nothing invented
    assert any(r.flags.get('occlusion') and r.flags['occlusion'].flag for r in judged)
    assert all(f.source == 'vlm' for r in judged for f in r.flags.values())
    # A failed frame is not written: the next run asks again and completes the sequence.
    with FakeVlmServer(default=Reply(content=answer_text())) as server:
        config = VlmConfig(url=server.url, model='fake', timeout_s=2.0, max_retries=0)
        again = annotate_sequence(sequence, AnnotateOptions(sources=('vlm',), vlm=config))
    assert (again.written, again.skipped, again.vlm_failed) == (
        report.vlm_failed, 6 - report.vlm_failed, 0)
    assert len(read_annotations(sequence.path / 'annotations.jsonl').records) == 6


def _cli(root: Path, *args: str) -> List[str]:
    return [sys.executable, '-m', 'simtrack_ros.data.annotate', str(root), *args]


def _lines(path: Path) -> List[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def test_a_killed_run_resumes_with_no_duplicate_and_no_lost_line(tmp_path):
    """SIGKILL the CLI while slow VLM answers are in flight, run it again, compare."""
    root = tmp_path / 'data'
    paths = [_sequence(root, f'seq_{i}', frames=14, seed=i) for i in range(3)]
    slow = Reply(content=answer_text(on=('motion_blur',)), delay_s=0.05)
    with FakeVlmServer(default=slow) as server:
        args = ('--sources', 'dataset,cv', '--vlm-url', server.url, '--vlm-model', 'fake',
                '--vlm-concurrency', '2', '--vlm-timeout', '5')
        env = dict(os.environ, PYTHONUNBUFFERED='1')
        process = subprocess.Popen(_cli(root, *args), env=env, stdout=subprocess.DEVNULL,
                                   stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and process.poll() is None:
            written = sum(len(_lines(p / 'annotations.jsonl')) for p in paths
                          if (p / 'annotations.jsonl').exists())
            if written >= 10:
                break
            time.sleep(0.02)
        process.send_signal(signal.SIGKILL)
        process.wait()
        before = {p.name: len(_lines(p / 'annotations.jsonl')) for p in paths
                  if (p / 'annotations.jsonl').exists()}
        assert 0 < sum(before.values()) < 42, before        # really killed mid-run
        finished = subprocess.run(_cli(root, *args, '--summary-json', str(tmp_path / 's.json')),
                                  capture_output=True, text=True, timeout=120)
    assert finished.returncode == 0, finished.stderr
    assert 'skipped (already done): ' in finished.stdout
    for path in paths:
        result = read_annotations(path / 'annotations.jsonl')
        assert result.errors == [], result.errors
        assert sorted(r.frame_index for r in result.records) == list(range(14))
        assert path.joinpath('annotations.jsonl').read_bytes().endswith(b'\n')
        present = [r for r in result.records if r.frame_index != 3]
        assert all(r.vlm_response is not None for r in present)
    summary = json.loads((tmp_path / 's.json').read_text())
    assert summary['frames'] == 42 and summary['class_counts']['motion_blur'] == 39


def test_summary_counts_and_kappa(tmp_path):
    assert cohen_kappa([1, 1, 0, 0], [1, 1, 0, 0]) == pytest.approx(1.0)
    assert cohen_kappa([1, 0, 1, 0], [0, 1, 0, 1]) == pytest.approx(-1.0)
    assert cohen_kappa([1, 1, 1], [1, 1, 1]) is None                # constant: undefined
    # Textbook example: 50 items, agreement 0.7, expected 0.5 -> kappa 0.4.
    a = [1] * 20 + [1] * 5 + [0] * 10 + [0] * 15
    b = [1] * 20 + [0] * 5 + [1] * 10 + [0] * 15
    assert cohen_kappa(a, b) == pytest.approx(0.4)
    path = _sequence(tmp_path, 'seq_s')
    annotate_sequence(read_sequence(path), AnnotateOptions(sources=('dataset', 'cv')))
    summary = summarize([path], 'annotations.jsonl')
    assert summary['frames'] == 12 and summary['problems'] == []
    assert summary['class_counts']['partial_visibility'] == 1
    assert summary['flags_by_source']['dataset']['occlusion'] == 2
    # Both sources apply OTB's rules to the 11 present frames: they must agree.
    pair = summary['agreement']['dataset vs cv']
    assert pair['low_resolution']['frames'] == 11 and pair['low_resolution']['agreement'] == 1.0


def test_cli_reports_bad_input(tmp_path, capsys):
    assert main([str(tmp_path / 'missing')]) == 2
    assert 'error' in capsys.readouterr().err
    (tmp_path / 'empty').mkdir()
    assert main([str(tmp_path / 'empty')]) == 2
    assert main([str(tmp_path), '--sources', 'oracle']) == 2
    capsys.readouterr()
    assert main([str(tmp_path), '--sources', 'dataset,cv,vlm']) == 2
    err = capsys.readouterr().err
    assert err.startswith('simtrack-annotate: error: --sources vlm needs an endpoint')
    assert '--vlm-url' in err and '--vlm-model' in err and err.count('\n') == 1
