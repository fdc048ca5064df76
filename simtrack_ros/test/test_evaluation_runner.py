"""One-pass runs of SimTrack and a baseline over real sequences, and the simtrack-eval CLI."""
from __future__ import annotations

import json
from pathlib import Path
import shutil

import cv2
import numpy as np
import onnx
import pytest
import torch

from simtrack_ros.data.annotations import read_annotations
from simtrack_ros.data.sequences import list_sequences, read_sequence, write_sequence
from simtrack_ros.data.synthetic_dataset import generate_dataset, SynthOptions
from simtrack_ros.evaluation.baselines import OpenCVTracker
from simtrack_ros.evaluation.cli import main
from simtrack_ros.evaluation.runner import evaluate, run_baseline, run_sequence, TrackerSpec
from simtrack_ros.export.onnx_export import template_path
from simtrack_ros.model import build_model, get_config
from simtrack_ros.model.checkpoint import save_checkpoint
from simtrack_ros.tracking import tracker as tracker_module
from simtrack_ros.tracking.tracker import Tracker

FRAMES = 10


@pytest.fixture(scope='module')
def dataset(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp('eval') / 'synth'
    generate_dataset(root, {'train': 1, 'test': 2},
                     SynthOptions(width=320, height=180, frames=FRAMES), seed=11, workers=1,
                     progress=False)
    return root


@pytest.fixture(scope='module')
def weights(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    model = build_model(get_config('small'))
    model.trained_heads = {'box', 'cls'}
    return save_checkpoint(model, tmp_path_factory.mktemp('weights') / 'small.pth')


def test_simtrack_runs_one_pass_with_probabilities_and_labels(dataset, weights, monkeypatch):
    calls = {'initialize': 0, 'track': 0}
    for method in calls:
        original = getattr(Tracker, method)

        def counted(self, *args, _original=original, _name=method, **kwargs):
            calls[_name] += 1
            return _original(self, *args, **kwargs)
        monkeypatch.setattr(Tracker, method, counted)
    paths = list_sequences(dataset, 'test')
    runs = evaluate([TrackerSpec('simtrack', str(weights))], paths, progress=False)['simtrack']
    assert [run.name for run in runs] == [path.name for path in paths]
    assert calls == {'initialize': 2, 'track': 2 * (FRAMES - 1)}  # once per sequence
    for run, path in zip(runs, paths):
        np.testing.assert_array_equal(run.boxes[0], run.gt[0])
        assert np.isfinite(run.boxes).all()
        assert np.isnan(run.probabilities[0]).all()
        np.testing.assert_allclose(run.probabilities[1:].sum(axis=1), 1.0, atol=1e-5)
        assert run.class_names == get_config('small').class_names and not run.multi_label
        assert (run.seconds > 0).all()
        for record in read_annotations(path / 'annotations.jsonl').records:
            np.testing.assert_array_equal(run.labels[record.frame_index], record.multi_label())
            np.testing.assert_array_equal(run.judged[record.frame_index],
                                          record.judged_mask().astype(bool))


def test_absent_frames_are_tracked_and_nothing_reinitialised(tmp_path, weights, monkeypatch):
    frames = [np.full((96, 128, 3), 40, np.uint8) for _ in range(8)]
    boxes = np.tile([40.0, 30.0, 24.0, 16.0], (8, 1))
    absent = np.zeros(8, int)
    absent[3:6] = 1
    for index, frame in enumerate(frames):
        if not absent[index]:
            frame[30:46, 40:64] = 220
    path = write_sequence(tmp_path / 'gone', frames, boxes, absent=absent).path
    initialized = []
    original = Tracker.initialize
    monkeypatch.setattr(Tracker, 'initialize',
                        lambda self, *a, **k: initialized.append(1) or original(self, *a, **k))
    run = run_sequence(TrackerSpec('simtrack', str(weights)), str(path))
    assert len(initialized) == 1
    assert np.isfinite(run.boxes).all() and (run.seconds[3:6] > 0).all()
    expected = [False, True, True, False, False, False, True, True]
    assert run.labels is None and run.evaluated().tolist() == expected


def test_a_first_frame_without_target_is_refused(tmp_path, weights):
    frames = [np.zeros((64, 64, 3), np.uint8)] * 2
    path = write_sequence(tmp_path / 'late', frames, [[0, 0, 0, 0], [5, 5, 10, 10]],
                          absent=[1, 0]).path
    with pytest.raises(ValueError, match='the first frame has no target box'):
        run_sequence(TrackerSpec('simtrack', str(weights)), str(path))


def test_parallel_workers_give_the_same_results(dataset, weights):
    """Also when the evaluating process ran a baseline before (OpenCV state it cannot reset)."""
    paths = list_sequences(dataset, 'test')
    for path in paths:
        run_baseline(OpenCVTracker('mil'), read_sequence(path))
    specs = [TrackerSpec('simtrack', str(weights)), TrackerSpec('mil')]
    serial = evaluate(specs, paths, workers=1, progress=False)
    parallel = evaluate(specs, paths[::-1], workers=2, progress=False)
    for name in ('simtrack', 'mil'):
        for one, other in zip(serial[name], parallel[name][::-1]):
            assert one.name == other.name
            np.testing.assert_allclose(one.boxes, other.boxes, atol=1e-3)


def test_cli_writes_tables_json_and_plots(dataset, weights, tmp_path, capsys):
    out = tmp_path / 'report'
    assert main([str(dataset), '--weights', str(weights), '--baselines', 'mil',
                 '--out', str(out), '--no-progress']) == 0
    printed = capsys.readouterr().out
    assert '2 sequences in' in printed and f'{dataset}/test' in printed  # test split by default
    for text in ('AUC', 'OP50', 'Prec@20', 'NormPrec', 'FPS', 'attribute (AUC)',
                 'challenge classifier of simtrack (single-label head', 'macro F1'):
        assert text in printed, text
    results = json.loads((out / 'results.json').read_text())
    assert list(results['trackers']) == ['simtrack', 'mil']
    assert results['split'] == 'test' and len(results['sequences']) == 2
    simtrack = results['trackers']['simtrack']
    assert simtrack['frames'] == 2 * (FRAMES - 1) - _absent_frames(dataset)
    assert simtrack['classification']['samples'] == 2 * (FRAMES - 1)
    assert results['trackers']['mil']['classification'] is None
    assert simtrack['attributes'] and results['trackers']['mil']['attributes']
    for name in ('success', 'precision', 'attributes', 'confusion_simtrack'):
        image = cv2.imread(str(out / f'{name}.png'))
        assert image is not None and image.shape[0] > 100, name


def test_cli_evaluates_an_exported_model_like_its_checkpoint(dataset, weights, tmp_path):
    """--runtime onnxruntime exports the .pth once; the .onnx file itself evaluates the same."""
    def auc(name: str, *arguments: str) -> float:
        out = tmp_path / name
        assert main([str(dataset), *arguments, '--baselines', 'none', '--out', str(out),
                     '--no-progress']) == 0
        return json.loads((out / 'results.json').read_text())['trackers']['simtrack']['auc']

    reference = auc('torch', '--weights', str(weights))
    assert auc('ort', '--weights', str(weights), '--runtime', 'onnxruntime') == pytest.approx(
        reference, abs=1e-3)
    (exported,) = weights.parent.glob('*.export/*/model.fp32.onnx')
    assert auc('file', '--weights', str(exported)) == pytest.approx(reference, abs=1e-3)


def test_cli_search_factor_reaches_the_tracker(dataset, weights, tmp_path, monkeypatch):
    """--search-factor sets the crop of every frame, and results.json records it."""
    sides = []
    crop_window = tracker_module.crop_window

    def recording(box, factor):
        sides.append(factor)
        return crop_window(box, factor)

    monkeypatch.setattr(tracker_module, 'crop_window', recording)
    out = tmp_path / 'sf'
    assert main([str(dataset), '--weights', str(weights), '--baselines', 'none',
                 '--search-factor', '3', '--out', str(out), '--no-progress']) == 0
    assert json.loads((out / 'results.json').read_text())['search_factor'] == 3.0
    assert set(sides) == {2.0, 3.0}  # template crops at 2, every search crop at 3


def _absent_frames(dataset: Path) -> int:
    return sum(int(value) for path in list_sequences(dataset, 'test')
               for value in (path / 'absence.label').read_text().split()[1:])


def test_cli_names_the_tracker_and_sequence_that_failed(dataset, weights, tmp_path, capsys):
    broken = tmp_path / 'broken'
    shutil.copytree(dataset, broken)
    frame = list_sequences(broken, 'test')[1] / '00000004.jpg'
    frame.write_bytes(b'not a JPEG')
    assert main([str(broken), '--weights', str(weights), '--baselines', 'none', '--workers', '2',
                 '--out', str(tmp_path / 'out'), '--no-progress']) == 1
    error = capsys.readouterr().err
    assert f'simtrack on {frame.parent}: SequenceFormatError: {frame}: frame 3 is unreadable' \
        in error


@pytest.mark.parametrize('arguments, message', [
    (['--baselines', 'none'], 'nothing to evaluate'),
    (['--baselines', 'mil,foo'], "unknown baseline 'foo'"),
    (['--weights', 'missing.pth'], 'missing.pth'),
    (['--split', 'nope'], 'nope'),
    (['--search-factor', '0'], '--search-factor: search_factor must be a positive number'),
])
def test_cli_reports_bad_arguments(dataset, tmp_path, capsys, arguments, message):
    assert main([str(dataset), '--out', str(tmp_path), *arguments]) == 2
    assert message in capsys.readouterr().err


def _exported(weights: Path) -> Path:
    from simtrack_ros.export.cache import cached_export
    return cached_export(weights, 'fp32', progress=lambda line: None).search


@pytest.mark.parametrize('arguments, message', [
    (['--precision', 'int8'], "precision 'int8' needs an exported runtime"),
    (['--runtime', 'onnxruntime', '--precision', 'bf16'], 'ONNX Runtime has no bf16 mode'),
    (['--runtime', 'torch', '--exported'], "is an exported model: runtime 'torch' needs"),
])
def test_cli_refuses_an_engine_it_cannot_run_before_the_run(dataset, weights, tmp_path, capsys,
                                                            arguments, message):
    """Exit 2 and one error line before any sequence runs (no progress bar, no traceback)."""
    if arguments[-1] == '--exported':
        arguments = [*arguments[:-1], '--weights', str(_exported(weights))]
    else:
        arguments = [*arguments, '--weights', str(weights)]
    out = tmp_path / 'out'
    assert main([str(dataset), *arguments, '--device', 'cpu', '--baselines', 'none',
                 '--out', str(out)]) == 2
    error = capsys.readouterr().err
    assert error.startswith('simtrack-eval: error: ') and message in error
    assert len(error.strip().splitlines()) == 1 and 'evaluating' not in error
    assert not out.exists()


@pytest.mark.parametrize('split', [None, 'test'])
def test_cli_refuses_a_folder_without_sequences(weights, tmp_path, capsys, split):
    data = tmp_path / 'empty'
    (data / (split or '')).mkdir(parents=True)
    out = tmp_path / 'out'
    assert main([str(data), '--weights', str(weights), '--baselines', 'none',
                 '--out', str(out), '--no-progress']) == 2
    where = f'split {split!r}' if split else 'no split'
    assert f'simtrack-eval: error: {data}: no sequences found ({where}' \
        in capsys.readouterr().err
    assert not out.exists()


def test_cli_with_baselines_none_says_nothing_about_baselines(dataset, weights, tmp_path,
                                                              capsys):
    out = tmp_path / 'out'
    assert main([str(dataset), '--weights', str(weights), '--baselines', 'none',
                 '--out', str(out), '--no-progress']) == 0
    printed = capsys.readouterr().out.replace(str(tmp_path), 'TMP')  # its name has 'baselines'
    assert 'baseline' not in printed and 'trackers: simtrack;' in printed
    assert json.loads((out / 'results.json').read_text())['skipped_baselines'] == {}


def test_cli_a_graph_the_runtime_cannot_open_is_one_line(dataset, weights, tmp_path, capsys):
    """A file whose metadata reads but whose graph ONNX Runtime refuses: exit 2, one line."""
    source = _exported(weights)
    proto = onnx.load(str(source))
    del proto.graph.node[-1]                     # an output without a producer
    broken = tmp_path / 'broken.onnx'
    onnx.save(proto, str(broken))
    shutil.copy(template_path(source), template_path(broken))
    assert main([str(dataset), '--weights', str(broken), '--runtime', 'onnxruntime',
                 '--baselines', 'none', '--out', str(tmp_path / 'out')]) == 2
    error = capsys.readouterr().err
    assert error.startswith('simtrack-eval: error: simtrack: '), error
    assert len(error.strip().splitlines()) == 1 and 'Traceback' not in error


def test_cli_an_output_that_is_a_file_is_refused(dataset, tmp_path, capsys):
    afile = tmp_path / 'afile'
    afile.write_text('mine')
    assert main([str(dataset), '--baselines', 'kcf', '--out', str(afile)]) == 2
    assert f'--out {afile} is a file' in capsys.readouterr().err
