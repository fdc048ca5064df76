"""simtrack-finetune end to end on a small generated dataset (CPU, a model smaller than tiny)."""
from __future__ import annotations

import json
from pathlib import Path
import sys
import types

from node_helpers import frame, image, TrackerUnderTest
import numpy as np
import pytest
import torch
from training_data import make_dataset, model_args

from simtrack_ros.challenges import CHALLENGE_NAMES, UNKNOWN_ID
from simtrack_ros.model import build_model, get_config, load_checkpoint, save_checkpoint
from simtrack_ros.model.checkpoint import save_official_state_dict
from simtrack_ros.training.cli import main
from simtrack_ros.training.data_setup import split_items
from simtrack_ros.training.observe import RunLog
from simtrack_ros.training.settings import TrainSettings
from simtrack_ros.training.start import model_config, parse_model_options


@pytest.fixture(scope='module')
def data(tmp_path_factory) -> Path:
    return make_dataset(tmp_path_factory.mktemp('trainer') / 'data')


def fast(data: Path, out: Path, *extra: str) -> list:
    return ['--data_dir', str(data), '--out', str(out), '--num_workers', '0', '--val_split',
            '0.34', '--no-tensorboard', *model_args(), *extra]


def jsonl(path: Path) -> list:
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.fixture(scope='module')
def trained(data, tmp_path_factory) -> Path:
    """Train jointly for 160 steps from random weights; return the output folder."""
    out = tmp_path_factory.mktemp('trainer') / 'joint'
    assert main(fast(data, out, '--task', 'joint', '--epochs', '10', '--batch_size', '8',
                     '--samples_per_epoch', '128', '--val_samples', '32', '--lr', '1e-3',
                     '--warmup_steps', '20', '--grad_clip', '1.0',
                     '--backbone_lr_mult', '1')) == 0
    return out


def mean(rows: list, key: str) -> float:
    return float(np.mean([row[key] for row in rows]))


def test_a_few_hundred_steps_teach_both_heads(trained):
    steps = jsonl(trained / 'steps.jsonl')
    assert len(steps) == 160
    first, last = steps[:20], steps[-20:]
    assert mean(last, 'loss') < 0.6 * mean(first, 'loss')
    assert mean(last, 'cls') < 0.5 * mean(first, 'cls')
    assert mean(last, 'giou') < mean(first, 'giou') - 0.2
    assert mean(steps[:3], 'lr') < steps[-1]['lr'] == pytest.approx(1e-3)  # warm-up
    epochs = jsonl(trained / 'metrics.jsonl')
    assert [e['epoch'] for e in epochs] == list(range(1, 11))
    val = epochs[-1]['val']
    assert val['mean_iou'] > epochs[0]['val']['mean_iou'] + 0.1
    assert val['accuracy'] > val['baseline']['accuracy']
    assert np.array(val['confusion']).shape == (10, 10)
    assert {'curves.png', 'confusion.png', 'last.pth', 'best.pth'} <= {
        p.name for p in trained.iterdir()}


def test_checkpoint_is_plain_data_the_node_loader_reads(trained, data):
    raw = torch.load(trained / 'last.pth', weights_only=True)
    assert raw['trained_heads'] == ['box', 'cls'] and raw['class_names'] == list(CHALLENGE_NAMES)
    training = raw['training']
    assert (training['epoch'], training['step']) == (10, 160)
    assert training['settings']['task'] == 'joint' and training['settings']['lr'] == 1e-3
    assert set(training['optimizer']) == {'state', 'param_groups'}
    assert isinstance(training['rng']['numpy']['keys'][0], int)
    assert isinstance(training['rng']['torch'], torch.Tensor)
    split = training['split']
    names = sorted(p.name for p in data.iterdir())
    assert sorted(split['train'] + split['val']) == names and not set(split['train']) & set(
        split['val'])
    best = torch.load(trained / 'best.pth', weights_only=True)['training']['best']
    rows = {row['epoch']: row['val'] for row in jsonl(trained / 'metrics.jsonl')}
    metrics = {epoch: val['joint_score'] for epoch, val in rows.items()}
    assert best['metric'] == 'joint_score'
    assert best['value'] == max(metrics.values()) and metrics[best['epoch']] == best['value']
    assert all(val['joint_score'] == pytest.approx(val['mean_iou'] + val['macro_f1'])
               for val in rows.values())
    model, report = load_checkpoint(trained / 'best.pth')
    assert model.cls_head_trained and model.trained_heads == {'box', 'cls'}
    assert model.config.search_size == 128 and not report.missing


def test_evaluation_reproduces_the_validation_metrics(trained, data, tmp_path):
    best = torch.load(trained / 'best.pth', weights_only=True)['training']
    assert main(['--evaluate', str(trained / 'best.pth'), '--data_dir', str(data), '--out',
                 str(tmp_path), '--eval_split', 'val', '--num_workers', '0']) == 0
    result = json.loads((tmp_path / 'evaluation.json').read_text())
    assert result['confusion'] == best['metrics']['val']['confusion']
    assert result['sequences'] == best['split']['val']
    assert (tmp_path / 'confusion.png').stat().st_size > 0
    assert 'macro F1' in (tmp_path / 'classification_report.txt').read_text()


@pytest.mark.parametrize('source', ['ours', 'official', 'clip'])
def test_guide_preset_trains_the_head_from_each_starting_point(data, tmp_path, source):
    config = model_config(TrainSettings(config='tiny', model_options=tuple(
        a for a in model_args()[3::2])))
    start = build_model(config)
    start.trained_heads = {'box'}
    path = tmp_path / 'start.pth'
    if source == 'ours':
        save_checkpoint(start, path)
    elif source == 'official':
        save_official_state_dict(start, path)
    else:
        torch.save({f'visual.{k}': v for k, v in start.backbone.visual.state_dict().items()},
                   path)
    out = tmp_path / 'out'
    assert main(fast(data, out, '--preset', 'guide', '--epochs', '1', '--pretrained_weights',
                     str(path))) == 0
    model, _ = load_checkpoint(out / 'last.pth')
    assert model.trained_heads == ({'cls'} if source == 'clip' else {'box', 'cls'})
    trained, initial = model.state_dict(), start.state_dict()
    frozen = [k for k in trained if k.startswith(('backbone.', 'bottleneck.'))]
    assert all(torch.equal(trained[k], initial[k]) for k in frozen if 'visual' in k)
    assert not torch.equal(trained['classifier.weight'], initial['classifier.weight'])


def test_two_stage_schedule_unfreezes_the_backbone_at_the_second_stage(data, tmp_path):
    start = build_model(model_config(TrainSettings(config='tiny', model_options=tuple(
        model_args()[3::2]))))
    save_checkpoint(start, tmp_path / 'start.pth')
    out = tmp_path / 'out'
    assert main(fast(data, out, '--preset', 'guide', '--epochs', '2', '--stage2_epoch', '1',
                     '--lr', '1e-3', '--stage2_lr', '1e-4', '--balance', 'sampler',
                     '--pretrained_weights', str(tmp_path / 'start.pth'))) == 0
    rates = {(s['epoch'], s['lr']) for s in jsonl(out / 'steps.jsonl')}
    assert rates == {(1, 1e-3), (2, 1e-4)}
    trained = load_checkpoint(out / 'last.pth')[0].state_dict()
    key = 'backbone.visual.transformer.resblocks.0.attn.in_proj_weight'
    assert not torch.equal(trained[key], start.state_dict()[key])


def test_scratch_preset_trains_the_box_head_on_unannotated_sequences(tmp_path):
    data = make_dataset(tmp_path / 'plain', sequences=4, frames=8, annotate=False)
    out = tmp_path / 'out'
    assert main(fast(data, out, '--preset', 'scratch', '--epochs', '1', '--samples_per_epoch',
                     '16', '--val_samples', '8', '--val_split', '0.25')) == 0
    raw = torch.load(out / 'last.pth', weights_only=True)
    assert raw['trained_heads'] == ['box']
    assert raw['training']['best']['metric'] == 'mean_iou'
    val = jsonl(out / 'metrics.jsonl')[0]['val']
    assert val['box_samples'] == 8 and 'accuracy' not in val


def test_tensorboard_gets_the_epoch_scalars_when_installed(tmp_path, monkeypatch, capsys):
    calls = []

    class Writer:
        def __init__(self, logdir):
            calls.append(('dir', logdir))

        def add_scalar(self, tag, value, step):
            calls.append((tag, value, step))

        def flush(self):
            pass

        def close(self):
            calls.append('closed')
    module = types.ModuleType('torch.utils.tensorboard')
    module.SummaryWriter = Writer
    monkeypatch.setitem(sys.modules, 'torch.utils.tensorboard', module)
    log = RunLog(tmp_path, print)
    log.epoch({'epoch': 1, 'train': {'loss': 1.5, 'lr': 1e-4},
               'val': {'accuracy': 0.5, 'baseline': {'accuracy': 0.25}, 'confusion': [[1]]}})
    log.close()
    assert ('dir', str(tmp_path / 'tensorboard')) in calls and calls[-1] == 'closed'
    assert {('train/loss', 1.5, 1), ('val/accuracy', 0.5, 1),
            ('val/baseline/accuracy', 0.25, 1)} <= set(calls[1:-1])
    assert not any('confusion' in call[0] for call in calls[1:-1])
    monkeypatch.setitem(sys.modules, 'torch.utils.tensorboard', None)
    RunLog(tmp_path, print).close()
    assert 'TensorBoard is not installed' in capsys.readouterr().out


@pytest.mark.parametrize('precision', ['bf16', 'fp16'])
def test_mixed_precision_and_multi_label_train(data, tmp_path, precision):
    out = tmp_path / 'out'
    assert main(fast(data, out, '--task', 'joint', '--epochs', '1', '--samples_per_epoch', '16',
                     '--val_samples', '8', '--batch_size', '8', '--precision', precision,
                     '--multi_label')) == 0
    raw = torch.load(out / 'last.pth', weights_only=True)
    assert raw['config']['multi_label'] and raw['trained_heads'] == ['box', 'cls']
    assert bool(raw['training']['scaler']) == (precision == 'fp16')
    row = jsonl(out / 'metrics.jsonl')[0]
    assert np.isfinite(row['train']['loss']) and 'multi_label' in row['val']


def test_node_publishes_probabilities_of_a_trained_checkpoint(ros, trained):
    node = TrackerUnderTest(ros, weights=str(trained / 'best.pth'))
    target_id = node.start_tracking()
    status, challenge = node.publish_and_classify(image(frame(), 3.0))
    assert status.classification_trained
    assert challenge.target_id == target_id and challenge.challenge != UNKNOWN_ID
    probabilities = np.array(challenge.probabilities)
    assert len(probabilities) == 10 and abs(probabilities.sum() - 1.0) < 1e-4


def write_other_architecture(path: Path) -> Path:
    save_checkpoint(build_model(get_config('tiny', width=96, layers=1, heads=2)), path)
    return path


def write_other_classes(path: Path) -> Path:
    save_checkpoint(build_model(get_config('tiny', class_names=CHALLENGE_NAMES[:9])), path)
    return path


@pytest.mark.parametrize('case, message', [
    ('missing', 'no such dataset folder'),
    ('unannotated', 'simtrack-annotate'),
    ('architecture', 'does not fit the model'),
    ('classes', 'class list does not match'),
    ('resume_plain', 'without training state'),
    ('model_option', '--model_option'),
])
def test_clear_errors_exit_with_status_2(data, tmp_path, capsys, case, message):
    args = ['--data_dir', str(data), '--out', str(tmp_path / 'out'), '--num_workers', '0']
    if case == 'missing':
        args[1] = str(tmp_path / 'nowhere')
    elif case == 'unannotated':
        args[1] = str(make_dataset(tmp_path / 'plain', sequences=2, frames=3, annotate=False))
    elif case == 'architecture':
        args += ['--config', 'tiny', '--pretrained_weights',
                 str(write_other_architecture(tmp_path / 'w96.pth'))]
    elif case == 'classes':
        args += ['--pretrained_weights', str(write_other_classes(tmp_path / 'nine.pth'))]
    elif case == 'resume_plain':
        args += ['--resume', str(write_other_classes(tmp_path / 'plain.pth'))]
    else:
        args += ['--model_option', 'width=wide']
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith('simtrack-finetune: error:') and message in err
    assert not (tmp_path / 'out' / 'last.pth').exists()


def test_an_output_folder_with_a_run_is_not_overwritten_by_accident(data, tmp_path, capsys):
    out = tmp_path / 'out'
    out.mkdir()
    (out / 'last.pth').write_bytes(b'an earlier run')
    assert main(fast(data, out, '--epochs', '1')) == 2
    assert 'holds a run already: continue it with --resume' in capsys.readouterr().err
    assert (out / 'last.pth').read_bytes() == b'an earlier run'


def test_split_folders_with_the_same_sequence_names_stay_apart(tmp_path):
    make_dataset(tmp_path / 'train', sequences=2, frames=3)
    make_dataset(tmp_path / 'val', sequences=1, frames=3, seed=1)
    settings = TrainSettings(data_dir=str(tmp_path))
    train, val, split = split_items(settings)
    assert split == {'train': ['train/seq_000', 'train/seq_001'], 'val': ['val/seq_000']}
    again = split_items(settings, split)
    assert [(i.split, i.name) for i in again[0] + again[1]] == [
        (i.split, i.name) for i in train + val]


def test_help_explains_the_guide_flags(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(['--help'])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    for flag in ('--data_dir', '--pretrained_weights', '--freeze_backbone', '--batch_size',
                 '--epochs', '--lr', '--resume', '--val_split', '--max_samples_per_seq',
                 '--preset', '--train_box', '--evaluate', 'mvtd', 'scratch'):
        assert flag in text, flag
    assert parse_model_options(('search_size=128', 'fusion=true')) == {
        'search_size': 128, 'fusion': True}
