"""Forward latency of the SimTrack model next to a plain eager baseline.

The baseline is the same model built the straightforward way (as the official code runs it):
``nn.MultiheadAttention`` on sequence-first tensors, plain ``nn.LayerNorm``, fp32, with the same
weights. Ours runs SDPA on batch-first tensors, in fp32 and under ``torch.autocast`` (bf16 on
CPU; fp16 and bf16 on CUDA), plus the per-frame cost with a cached template. Times are the
median of repeated runs after warm-up, the variants interleaved round by round (the machine
may be shared). Speedup = baseline time / variant time; max|Δscore| is the largest difference
of the corner score maps (logits) from the baseline's.

    python benchmarks/model_benchmark.py [--quick] [--json results.json]
"""
from __future__ import annotations

import argparse
from collections import OrderedDict
import copy
import json
import os
from pathlib import Path
import statistics
import sys
import time
from typing import Callable, Dict, List, Optional, Tuple

from machine_info import machine_header, machine_info
import torch
from torch import nn

from simtrack_ros.model import build_model, SimTrack
from simtrack_ros.model.clip_vit import QuickGELU


class BaselineBlock(nn.Module):
    """CLIP's residual block as openai/CLIP writes it: sequence-first ``nn.MultiheadAttention``."""

    def __init__(self, width: int, heads: int) -> None:
        super().__init__()
        self.attn = nn.MultiheadAttention(width, heads)
        self.ln_1 = nn.LayerNorm(width)
        self.mlp = nn.Sequential(OrderedDict([
            ('c_fc', nn.Linear(width, 4 * width)), ('gelu', QuickGELU()),
            ('c_proj', nn.Linear(4 * width, width))]))
        self.ln_2 = nn.LayerNorm(width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.ln_1(x)
        x = x + self.attn(h, h, h, need_weights=False)[0]
        return x + self.mlp(self.ln_2(x))


class BaselineTransformer(nn.Module):
    """Takes B×L×D like ours, permutes to L×B×D around the blocks (the official code's way)."""

    def __init__(self, width: int, layers: int, heads: int) -> None:
        super().__init__()
        self.resblocks = nn.Sequential(*[BaselineBlock(width, heads) for _ in range(layers)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.resblocks(x.permute(1, 0, 2)).permute(1, 0, 2)


def make_baseline(model: SimTrack) -> SimTrack:
    """Return a copy of ``model`` whose transformer is the baseline one, with the same weights."""
    config = model.config
    baseline = copy.deepcopy(model)
    transformer = BaselineTransformer(config.width, config.layers, config.heads)
    transformer.load_state_dict(model.backbone.visual.transformer.state_dict())
    baseline.backbone.visual.transformer = transformer
    return baseline.eval()


def time_interleaved(fns: Dict[str, Callable[[], object]], device: torch.device, warmup: int,
                     reps: int) -> Tuple[Dict[str, List[float]], Dict[str, object]]:
    """Time each function and return its wall times in ms and its last result.

    Times are of ``reps`` rounds after ``warmup`` rounds.

    Each round calls every function once, so load changes on a shared machine hit all alike.
    """
    def sync() -> None:
        if device.type == 'cuda':
            torch.cuda.synchronize(device)

    times: Dict[str, List[float]] = {name: [] for name in fns}
    results: Dict[str, object] = {}
    for round_index in range(warmup + reps):
        for name, fn in fns.items():
            sync()
            start = time.perf_counter()
            results[name] = fn()
            sync()
            if round_index >= warmup:
                times[name].append((time.perf_counter() - start) * 1e3)
    return times, results


def bench_case(name: str, batch: int, device: torch.device, warmup: int, reps: int
               ) -> List[Dict[str, object]]:
    """Rows for one config and batch size on one device."""
    torch.manual_seed(0)
    model = build_model(name).eval().to(device)
    baseline = make_baseline(model)
    config = model.config
    template = torch.randn(batch, 3, config.template_size, config.template_size, device=device)
    search = torch.randn(batch, 3, config.search_size, config.search_size, device=device)
    anno = torch.tensor([[0.25, 0.25, 0.5, 0.5]] * batch, device=device)
    low = {'bf16': torch.bfloat16} if device.type == 'cpu' else {
        'fp16': torch.float16, 'bf16': torch.bfloat16}
    with torch.inference_mode():
        reference = baseline(template, search, anno)
        tokens = model.encode_template(template, anno)
        variants: Dict[str, Callable[[], Dict[str, torch.Tensor]]] = {
            'baseline fp32': lambda: baseline(template, search, anno),
            'ours fp32': lambda: model(template, search, anno),
            'ours fp32 cached template': lambda: model.forward_search(tokens, search),
        }
        for label, dtype in low.items():
            def autocast_run(dtype: torch.dtype = dtype) -> Dict[str, torch.Tensor]:
                with torch.autocast(device.type, dtype=dtype):
                    return model(template, search, anno)
            variants[f'ours {label} autocast'] = autocast_run
        rows = []
        timings, results = time_interleaved(variants, device, warmup, reps)
        for variant, times in timings.items():
            out = results[variant]
            diff = max((out[k].float() - reference[k]).abs().max().item()
                       for k in ('score_map_tl', 'score_map_br'))
            rows.append({'config': name, 'batch': batch, 'device': device.type,
                         'variant': variant, 'median_ms': statistics.median(times),
                         'min_ms': min(times), 'reps': reps, 'max_score_diff': diff})
    base = rows[0]['median_ms']
    for row in rows:
        row['per_sample_ms'] = row['median_ms'] / batch
        row['speedup'] = base / row['median_ms']
    return rows


def print_table(rows: List[Dict[str, object]]) -> None:
    header = (f'{"config":<13} {"dev":<4} {"batch":>5}  {"variant":<26} {"median ms":>10} '
              f'{"ms/sample":>10} {"speedup":>8} {"max|Δscore|":>11}')
    print(header)
    print('-' * len(header))
    for row in rows:
        print(f'{row["config"]:<13} {row["device"]:<4} {row["batch"]:>5}  {row["variant"]:<26} '
              f'{row["median_ms"]:>10.1f} {row["per_sample_ms"]:>10.1f} '
              f'{row["speedup"]:>7.2f}x {row["max_score_diff"]:>11.1e}')


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--quick', action='store_true', help='fewer repetitions')
    parser.add_argument('--json', type=Path, default=None, help='also write the rows here')
    parser.add_argument('--configs', nargs='+', default=['simtrack-b16', 'tiny'])
    parser.add_argument('--batches', nargs='+', type=int, default=[1, 8])
    args = parser.parse_args(argv)
    cores = len(os.sched_getaffinity(0)) if hasattr(os, 'sched_getaffinity') else os.cpu_count()
    torch.set_num_threads(cores or 1)
    devices = [torch.device('cpu')]
    if torch.cuda.is_available():
        devices.append(torch.device('cuda'))
    print(machine_header(), flush=True)
    rows: List[Dict[str, object]] = []
    for device in devices:
        for name in args.configs:
            for batch in args.batches:
                # The big model on a few CPU cores takes seconds per call: fewer repetitions.
                slow = device.type == 'cpu' and name != 'tiny' and batch > 1
                warmup, reps = (1, 3) if args.quick else (1, 5) if slow else (3, 10)
                rows.extend(bench_case(name, batch, device, warmup, reps))
    print_table(rows)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({'machine': machine_info(), 'rows': rows}, indent=2))
    return 0


if __name__ == '__main__':
    sys.exit(main())
