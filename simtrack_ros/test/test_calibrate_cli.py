"""simtrack-calibrate on generated labelled sequences: a real fit, checkpoint and errors."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from simtrack_ros.data.synthetic_dataset import generate_dataset, SynthOptions
from simtrack_ros.model import build_model, get_config, load_checkpoint, save_checkpoint
from simtrack_ros.tracking.challenge_cues import CUE_NAMES
from simtrack_ros.training.calibrate_cli import main


@pytest.fixture(scope='module')
def dataset(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp('calibrate') / 'synth'
    generate_dataset(root, {'calib': 2}, SynthOptions(width=320, height=180, frames=8),
                     seed=5, workers=1, progress=False)
    return root


def _weights(folder: Path, multi_label: bool = True) -> Path:
    torch.manual_seed(0)
    model = build_model(get_config('small').replace(multi_label=multi_label))
    model.trained_heads = {'box', 'cls'}
    return save_checkpoint(model, folder / f'small_{multi_label}.pth',
                           metadata={'trained_by': 'test'})


def test_fits_and_writes_a_calibrated_checkpoint(dataset, tmp_path, capsys):
    out = tmp_path / 'calibrated.pth'
    assert main([str(dataset), '--weights', str(_weights(tmp_path)), '--out', str(out),
                 '--search-factor', '3', '--no-progress']) == 0
    captured = capsys.readouterr()
    printed = captured.out
    assert f'on 2 sequences in {dataset}/calib (search factor 3)' in printed
    assert '14 frames;' in printed and 'macro F1' in printed
    model, report = load_checkpoint(out)
    assert model.challenge_calibration is not None
    assert model.challenge_calibration.cue_names == CUE_NAMES
    fit = report.metadata['challenge_calibration_fit']
    assert report.metadata['trained_by'] == 'test'          # the source's metadata is kept
    assert (fit['sequences'], fit['frames'], fit['search_factor']) == (2, 14, 3.0)
    summary = json.loads(out.with_name('calibrated.pth.calibration.json').read_text())
    assert set(summary['f1_calibrated']) == set(model.class_names)
    # 14 frames show no class 10 times each way: none is fitted, each keeps the head's value.
    assert summary['head_only'] == list(model.class_names)
    assert "keep the head's own probability" in captured.err
    assert 'motion_blur' in captured.err.split('warning:')[1]
    assert summary['f1_calibrated'] == summary['f1_head']


def test_an_empty_folder_is_refused(tmp_path, capsys):
    (tmp_path / 'empty').mkdir()
    assert main([str(tmp_path / 'empty'), '--weights', str(_weights(tmp_path)), '--out',
                 str(tmp_path / 'o.pth'), '--no-progress']) == 2
    assert 'no sequences found' in capsys.readouterr().err


@pytest.mark.parametrize('change, message', [
    ({'multi_label': False}, 'needs a trained multi-label challenge head'),
    ({'out': 'x.onnx'}, 'write a .pth checkpoint'),
    ({'weights': 'missing.pth'}, 'missing.pth'),
    ({'extra': ['--search-factor', '-1']}, 'search_factor must be a positive number'),
])
def test_bad_arguments_exit_2_with_the_reason(dataset, tmp_path, capsys, change, message):
    weights = change.get('weights') or str(_weights(tmp_path, change.get('multi_label', True)))
    out = str(tmp_path / change.get('out', 'out.pth'))
    assert main([str(dataset), '--weights', weights, '--out', out, '--no-progress',
                 *change.get('extra', [])]) == 2
    assert message in capsys.readouterr().err
    assert not Path(out).exists()


def test_sequences_without_labels_are_refused(dataset, tmp_path, capsys):
    unlabelled = tmp_path / 'unlabelled'
    for sequence in (dataset / 'calib').iterdir():
        if sequence.is_dir():
            target = unlabelled / sequence.name
            target.mkdir(parents=True)
            for item in sequence.iterdir():
                if item.name != 'annotations.jsonl':
                    (target / item.name).symlink_to(item.resolve())
    assert main([str(unlabelled), '--weights', str(_weights(tmp_path)), '--out',
                 str(tmp_path / 'o.pth'), '--no-progress']) == 2
    assert 'need annotations.jsonl files' in capsys.readouterr().err
