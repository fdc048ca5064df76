"""A real 2-process ``torchrun`` run (gloo on the CPU): one writer, metrics over both ranks."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import torch
from training_data import make_dataset, model_args

from simtrack_ros.model import load_checkpoint


def test_torchrun_two_processes_train_and_write_one_checkpoint(tmp_path):
    data = make_dataset(tmp_path / 'data')
    out = tmp_path / 'out'
    command = [sys.executable, '-m', 'torch.distributed.run', '--standalone',
               '--nproc_per_node', '2', '-m', 'simtrack_ros.training.cli',
               '--data_dir', str(data), '--out', str(out), '--task', 'joint', '--epochs', '2',
               '--batch_size', '4', '--samples_per_epoch', '24', '--val_samples', '8',
               '--num_workers', '0', '--val_split', '0.34', '--device', 'cpu',
               '--stage2_epoch', '1', '--lr', '1e-3', '--stage2_lr', '1e-4',
               '--no-tensorboard', *model_args()]
    result = subprocess.run(command, capture_output=True, text=True, timeout=240,
                            env={**os.environ, 'OMP_NUM_THREADS': '1'})
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert result.stdout.count('simtrack-finetune: 2 epochs, 6 steps') == 1  # rank 0 only
    assert sorted(p.name for p in out.iterdir()) == [
        'best.pth', 'confusion.png', 'curves.png', 'last.pth', 'metrics.jsonl', 'steps.jsonl']
    steps = [json.loads(line) for line in (out / 'steps.jsonl').read_text().splitlines()]
    assert [s['step'] for s in steps] == [1, 2, 3, 4, 5, 6]  # 24 samples / (2 ranks x 4)
    # two stages: DDP is rebuilt when the backbone joins the trainable set
    assert [s['lr'] for s in steps] == [1e-3] * 3 + [1e-4] * 3
    assert 'epoch 2: ' in result.stdout and 'trainable tensors' in result.stdout
    rows = [json.loads(line) for line in (out / 'metrics.jsonl').read_text().splitlines()]
    assert [row['epoch'] for row in rows] == [1, 2]
    assert all(row['train']['epoch_samples'] == 24 for row in rows)  # both ranks' batches
    assert rows[-1]['val']['samples'] == 24  # every validation sample once, over both ranks
    assert rows[-1]['val']['box_samples'] == 8
    raw = torch.load(out / 'last.pth', weights_only=True)
    assert raw['training']['settings']['task'] == 'joint' and raw['training']['step'] == 6
    assert load_checkpoint(out / 'last.pth')[0].trained_heads == {'box', 'cls'}
