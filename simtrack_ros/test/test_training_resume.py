"""Resume exactness and crash safety of training checkpoints."""
from __future__ import annotations

import json
import os
from pathlib import Path
import shutil
import signal
import subprocess
import sys
import textwrap
import time

import pytest
import torch
from training_data import make_dataset, model_args

from simtrack_ros.model import checkpoint as model_checkpoint
from simtrack_ros.model import load_checkpoint
from simtrack_ros.training.checkpointing import read_training_entry, remove_stale_temps
from simtrack_ros.training.cli import main
from simtrack_ros.training.trainer import Trainer


@pytest.fixture(scope='module')
def data(tmp_path_factory) -> Path:
    return make_dataset(tmp_path_factory.mktemp('resume') / 'data', sequences=4, frames=8)


def run_args(data: Path, out: Path, workers: int) -> list:
    # Everything that carries state across epochs: warm-up + cosine, clipping, accumulation
    # with a partial last group, dropout, augmentation, class weights.
    return ['--data_dir', str(data), '--out', str(out), '--task', 'joint', '--epochs', '3',
            '--batch_size', '4', '--samples_per_epoch', '20', '--val_samples', '8',
            '--accum_steps', '2', '--schedule', 'cosine', '--warmup_steps', '3',
            '--grad_clip', '0.5', '--lr', '1e-3', '--val_split', '0.25', '--num_workers',
            str(workers), '--no-tensorboard', *model_args()]


def steps(out: Path) -> list:
    return [json.loads(line) for line in (out / 'steps.jsonl').read_text().splitlines()]


def interrupt_at(monkeypatch, step: int) -> None:
    original = Trainer._optimizer_step

    def step_or_stop(self):
        if self.state.step == step:
            raise KeyboardInterrupt
        return original(self)
    monkeypatch.setattr(Trainer, '_optimizer_step', step_or_stop)


@pytest.mark.parametrize('workers', [0, 2])
def test_resumed_run_repeats_the_uninterrupted_losses(data, tmp_path, monkeypatch, workers):
    whole, cut = tmp_path / 'whole', tmp_path / 'cut'
    assert main(run_args(data, whole, workers)) == 0
    # 5 batches -> 3 optimizer steps per epoch; stop inside epoch 3, after 1 of its steps.
    with monkeypatch.context() as patch:
        interrupt_at(patch, 7)
        assert main(run_args(data, cut, workers)) == 130        # as after Ctrl-C
    assert read_training_entry(cut / 'last.pth')['epoch'] == 2
    assert len(steps(cut)) == 7  # the partial epoch's step is in the log until the resume
    assert main(['--resume', str(cut / 'last.pth')]) == 0
    expected, resumed = steps(whole), steps(cut)
    assert [s['step'] for s in resumed] == list(range(1, 10))
    for key in ('loss', 'giou', 'l1', 'cls', 'lr', 'grad_norm'):
        assert [s[key] for s in resumed] == [s[key] for s in expected], key
    rows = [json.loads(line) for line in (cut / 'metrics.jsonl').read_text().splitlines()]
    assert [row['epoch'] for row in rows] == [1, 2, 3]
    final = [torch.load(out / 'last.pth', weights_only=True)['state_dict'] for out in (whole, cut)]
    assert all(torch.equal(final[0][k], final[1][k]) for k in final[0])


def test_crash_while_saving_keeps_the_last_good_checkpoint(data, tmp_path, monkeypatch):
    out = tmp_path / 'out'
    args = run_args(data, out, 0)
    assert main(args[:args.index('--epochs') + 1] + ['1'] + args[args.index('--epochs') + 2:]
                ) == 0
    good = (out / 'last.pth').read_bytes()
    real_save = torch.save

    def torn_save(obj, stream):
        real_save(obj, stream)
        stream.truncate(stream.tell() // 2)  # half the file written, then the crash
        raise OSError('disk full')
    monkeypatch.setattr(model_checkpoint.torch, 'save', torn_save)
    with pytest.raises(OSError, match='disk full'):
        main(['--resume', str(out / 'last.pth'), '--epochs', '2'])
    assert (out / 'last.pth').read_bytes() == good
    assert not list(out.glob('.*.tmp'))
    model, _ = load_checkpoint(out / 'last.pth')
    assert model.trained_heads == {'box', 'cls'}


CHILD = textwrap.dedent("""
    import sys, time
    from simtrack_ros.model import build_model, checkpoint
    def slow_fsync(fd):
        print('writing', flush=True)
        time.sleep(60)
    checkpoint.os.fsync = slow_fsync
    checkpoint.save_checkpoint(build_model(sys.argv[2]), sys.argv[1])
""")


def test_sigkill_mid_save_leaves_the_previous_file(tmp_path):
    from simtrack_ros.model import build_model, save_checkpoint
    path = tmp_path / 'last.pth'
    old = build_model('tiny')
    old.trained_heads = {'box'}
    save_checkpoint(old, path)
    before = path.read_bytes()
    child = subprocess.Popen([sys.executable, '-c', CHILD, str(path), 'tiny'],
                             stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == 'writing'
        temps = list(tmp_path.glob('.last.pth.*.tmp'))
        assert len(temps) == 1 and temps[0].stat().st_size > 0
        os.kill(child.pid, signal.SIGKILL)
    finally:
        child.wait(timeout=30)
        child.stdout.close()
    assert child.returncode == -signal.SIGKILL
    assert path.read_bytes() == before
    assert load_checkpoint(path)[0].trained_heads == {'box'}
    assert remove_stale_temps(tmp_path) == temps and not list(tmp_path.glob('.*.tmp'))


def test_resume_keeps_the_model_and_writes_beside_its_checkpoint(data, tmp_path, capsys):
    """A copied run resumes in its new folder; a flag that changes the model is refused."""
    first = tmp_path / 'first'
    args = run_args(data, first, 0)
    args[args.index('--epochs') + 1] = '1'
    assert main(args) == 0
    moved = tmp_path / 'moved'
    shutil.copytree(first, moved)
    before = (first / 'metrics.jsonl').read_text()
    assert main(['--resume', str(moved / 'last.pth'), '--epochs', '2']) == 0
    assert (first / 'metrics.jsonl').read_text() == before          # the original untouched
    assert len((moved / 'metrics.jsonl').read_text().splitlines()) == 2
    capsys.readouterr()
    for flag, value in (('--task', 'cls'), ('--config', 'small')):
        assert main(['--resume', str(moved / 'last.pth'), '--epochs', '3', flag, value]) == 2
        error = capsys.readouterr().err
        assert f'--{flag[2:]} {value!r}: the run was started with' in error, error
        assert 'a resumed run keeps it' in error
    assert read_training_entry(moved / 'last.pth')['epoch'] == 2       # nothing ran


def test_a_folder_with_only_held_out_sequences_is_not_trained_on(data, tmp_path, capsys):
    shutil.copytree(data, tmp_path / 'only' / 'test')
    assert main(run_args(tmp_path / 'only', tmp_path / 'out', 0)) == 2
    assert 'holds a test/ split but no train/ or val/' in capsys.readouterr().err


@pytest.mark.parametrize('signum, status', [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_signal_stops_training_with_how_to_resume(data, tmp_path, signum, status):
    """A real process, a real signal after the first epoch: one line, no traceback."""
    out = tmp_path / 'out'
    args = run_args(data, out, 0)
    args[args.index('--epochs') + 1] = '1000'
    process = subprocess.Popen([sys.executable, '-m', 'simtrack_ros.training.cli', *args],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        for _ in range(1200):
            if (out / 'last.pth').is_file() or process.poll() is not None:
                break
            time.sleep(0.1)
        process.send_signal(signum)
        _, err = process.communicate(timeout=120)
    finally:
        process.kill()
    name = signal.Signals(signum).name
    assert process.returncode == status, err
    assert f'stopped by {name}; continue with --resume {out / "last.pth"}' in err, err
    assert 'Traceback' not in err, err


def test_an_output_that_is_a_file_is_refused(data, tmp_path, capsys):
    afile = tmp_path / 'afile'
    afile.write_text('mine')
    assert main(run_args(data, afile, 0)) == 2
    assert f'--out {afile} is a file' in capsys.readouterr().err
    assert afile.read_text() == 'mine'
