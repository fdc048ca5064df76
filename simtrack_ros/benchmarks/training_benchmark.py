"""Training throughput (samples/s) of simtrack-finetune's step: forward, loss, backward, AdamW.

The step is built from the trainer's own parts (the task's trainable set, the official parameter
groups, ``SimTrackLoss``, the precision's autocast and scaler) on random crops of the model's
sizes, so the figure is the model's, without the data pipeline (``metrics.jsonl`` has the
end-to-end ``samples_per_s`` of a real run). Timed after warm-up steps; the median step.

    python benchmarks/training_benchmark.py                 # tiny joint + B/16 frozen-backbone cls
    python benchmarks/training_benchmark.py --runs tiny:joint:16 simtrack-b16:cls-frozen:8 \
        --steps 5 --warmup 2 --precision auto --json results/training.json
"""
from __future__ import annotations

import argparse
import json
import statistics
import time
from typing import Dict, List

from machine_info import machine_header, machine_info
import torch

from simtrack_ros.model import build_model
from simtrack_ros.training.losses import SimTrackLoss
from simtrack_ros.training.precision import resolve_device, resolve_precision
from simtrack_ros.training.schedule import build_optimizer, set_trainable
from simtrack_ros.training.settings import TrainSettings

DEFAULT_RUNS = ('tiny:joint:16', 'tiny:joint:8', 'simtrack-b16:cls-frozen:8')


def batch(config, size: int, device: torch.device) -> Dict[str, torch.Tensor]:
    """Random normalised crops and targets of one batch."""
    t, s = config.template_size, config.search_size
    corner = torch.rand(size, 2, device=device) * 0.5
    return {'template': torch.randn(size, 3, t, t, device=device),
            'search': torch.randn(size, 3, s, s, device=device),
            'template_anno': torch.tensor([[0.25, 0.25, 0.5, 0.5]], device=device).repeat(size, 1),
            'search_box': torch.cat([corner, corner + 0.3], dim=1),
            'label': torch.randint(0, config.num_classes, (size,), device=device),
            'has_label': torch.ones(size, dtype=torch.bool, device=device)}


def measure(run: str, steps: int, warmup: int, precision_name: str, device: torch.device
            ) -> Dict[str, object]:
    """Median step time and samples/s of one ``config:task[-frozen]:batch`` run."""
    config_name, task, size = run.split(':')
    frozen = task.endswith('-frozen')
    settings = TrainSettings(task=task.replace('-frozen', ''), freeze_backbone=frozen)
    model = build_model(config_name).to(device).train()
    set_trainable(model, settings, 0)
    optimizer = build_optimizer(model, settings)
    criterion = SimTrackLoss(train_box=settings.trains_box, train_cls=settings.trains_cls)
    precision, _ = resolve_precision(precision_name, device)
    scaler = precision.scaler()
    data = batch(model.config, int(size), device)
    times: List[float] = []
    for index in range(warmup + steps):
        started = time.perf_counter()
        with precision.autocast():
            outputs = model(data['template'], data['search'], data['template_anno'],
                            run_box_head=settings.trains_box, run_cls_head=settings.trains_cls)
        scaler.scale(criterion(outputs, data)['total']).backward()
        scaler.unscale_(optimizer)
        torch.nn.utils.clip_grad_norm_([p for p in model.parameters() if p.grad is not None], 1.0)
        scaler.step(optimizer)
        scaler.update()
        optimizer.zero_grad(set_to_none=True)
        if device.type == 'cuda':
            torch.cuda.synchronize()
        if index >= warmup:
            times.append(time.perf_counter() - started)
    step = statistics.median(times)
    return {'run': run, 'precision': precision.name, 'batch': int(size),
            'trainable_params': sum(p.numel() for p in model.parameters() if p.requires_grad),
            'step_ms': step * 1000, 'samples_per_s': int(size) / step}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--runs', nargs='+', default=list(DEFAULT_RUNS),
                        help='config:task[-frozen]:batch (task cls, joint or box)')
    parser.add_argument('--steps', type=int, default=5)
    parser.add_argument('--warmup', type=int, default=2)
    parser.add_argument('--precision', default='auto')
    parser.add_argument('--device', default='auto')
    parser.add_argument('--json', help='write the rows and the machine info here')
    args = parser.parse_args()
    device = resolve_device(args.device)
    print(machine_header())
    print(f'{"run":<28} {"precision":>9} {"trainable":>10} {"step ms":>9} {"samples/s":>10}')
    rows = []
    for run in args.runs:
        row = measure(run, args.steps, args.warmup, args.precision, device)
        rows.append(row)
        print(f'{run:<28} {row["precision"]:>9} {row["trainable_params"]:>10,} '
              f'{row["step_ms"]:>9.1f} {row["samples_per_s"]:>10.1f}', flush=True)
    if args.json:
        with open(args.json, 'w', encoding='utf-8') as stream:
            json.dump({'machine': machine_info(), 'rows': rows}, stream, indent=1)


if __name__ == '__main__':
    main()
