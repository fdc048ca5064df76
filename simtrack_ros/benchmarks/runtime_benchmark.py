"""Per-frame ``Tracker.track()`` latency of every runtime and precision, against the official way.

For each model config and number of targets, in one process and interleaved round by round in
a rotating order (a noisy host affects every runner alike):

* ``official``: the official test-time procedure (``tracker_benchmark.Baseline``): per target
  ``sample_target``, the FULL ``model.forward`` (template embedding and search, every frame)
  in fp32 eager PyTorch, map back, clip; targets one after the other.
* every (runtime, precision) pair of :data:`CANDIDATES` this machine supports, as a
  :class:`~simtrack_ros.tracking.Tracker` (cached template tokens, one batched forward for all
  targets): PyTorch fp32/bf16 (fp16 on CUDA), ONNX Runtime fp32 and dynamic int8, OpenVINO
  fp32, bf16 and static int8 (NNCF). bf16 runs only where the CPU has it natively (about 3x
  slower than fp32 where it is emulated); pairs the engine factory refuses are listed as
  skipped with its reason.

Exported and quantised files come from the export cache of a checkpoint (``--weights``, or
seeded random weights saved to a temporary folder: timing does not depend on the weights), so
each is built once per config. Reported per runner: median ms per frame (all targets), the
interquartile range, ``vs official`` = official median / runner median, and ``paired`` = the
median over rounds of official / runner in the same round. The output starts with the machine
(CPU model and flags, threads, runtime versions, OpenVINO's CPU capabilities). Usage::

    python benchmarks/runtime_benchmark.py [--configs small simtrack-b16] [--targets 1 4]
        [--rounds N] [--warmup N] [--weights CKPT] [--only openvino:int8 ...] [--json FILE]
"""
from __future__ import annotations

import argparse
import importlib.util
import json
from pathlib import Path
import statistics
import sys
import tempfile
import time
from typing import Callable, Dict, List, Optional, Sequence, Tuple

from machine_info import machine_info
import numpy as np
import torch
from tracker_benchmark import Baseline, FRAME_HEIGHT, FRAME_WIDTH, make_boxes, make_frames, MS

from simtrack_ros.model import build_model
from simtrack_ros.model.checkpoint import load_checkpoint, save_checkpoint
from simtrack_ros.tracking import EngineOptions, Tracker, TrackerOptions
from simtrack_ros.tracking.cpu_features import native_bf16
from simtrack_ros.tracking.precision_policy import choose_precision

#: (runtime, precision) pairs timed where the machine supports them.
CANDIDATES = (('torch', 'fp32'), ('torch', 'bf16'), ('torch', 'fp16'),
              ('onnxruntime', 'fp32'), ('onnxruntime', 'int8'),
              ('openvino', 'fp32'), ('openvino', 'bf16'), ('openvino', 'int8'))
#: Python module each runtime needs.
RUNTIME_MODULES = {'onnxruntime': 'onnxruntime', 'openvino': 'openvino'}
#: What an int8 file is, per runtime.
INT8_KIND = {'onnxruntime': 'int8 dynamic', 'openvino': 'int8 static NNCF'}
OFFICIAL = 'official (torch fp32, full forward)'
#: Measured rounds per config (others: DEFAULT_ROUNDS).
ROUNDS = {'tiny': 30, 'small': 40, 'simtrack-b16': 15}
DEFAULT_ROUNDS = 10
WARMUP = 2
Runner = Callable[[np.ndarray], object]


def runtime_info() -> Dict[str, str]:
    """Versions of ONNX Runtime (with its providers) and OpenVINO (with its CPU capabilities)."""
    info = {}
    if importlib.util.find_spec('onnxruntime'):
        import onnxruntime
        info['onnxruntime'] = (f'{onnxruntime.__version__} providers '
                               f'{",".join(onnxruntime.get_available_providers())}')
    if importlib.util.find_spec('openvino'):
        import openvino
        capabilities = openvino.Core().get_property('CPU', 'OPTIMIZATION_CAPABILITIES')
        info['openvino'] = f'{openvino.__version__} CPU capabilities {",".join(capabilities)}'
    return info


def unsupported(runtime: str, precision: str, device: torch.device) -> Optional[str]:
    """Why this machine does not run ``runtime`` at ``precision`` (None: it does, or try)."""
    module = RUNTIME_MODULES.get(runtime)
    if module and importlib.util.find_spec(module) is None:
        return f'{module} is not installed'
    if precision == 'fp16' and device.type != 'cuda':
        return 'fp16 needs CUDA'
    if precision == 'bf16' and device.type == 'cpu' and not native_bf16():
        return 'no native bf16 on this CPU (emulated: about 3x slower than fp32)'
    return None


def label(runtime: str, precision: str) -> str:
    """Row name of a runner, e.g. ``openvino int8 static NNCF``."""
    return f'{runtime} {INT8_KIND.get(runtime, precision) if precision == "int8" else precision}'


def build_runners(model: torch.nn.Module, checkpoint: Path, device: torch.device,
                  only: Sequence[str]) -> Tuple[Dict[str, Tracker], List[Dict[str, str]]]:
    """Trackers of every supported candidate (exports come from the cache), and the skipped."""
    trackers, skipped = {}, []
    for runtime, precision in CANDIDATES:
        if only and f'{runtime}:{precision}' not in only:
            continue
        name = label(runtime, precision)
        reason = unsupported(runtime, precision, device)
        if reason is None:
            engine = EngineOptions(device=device.type, runtime=runtime, precision=precision)
            start = time.perf_counter()
            try:
                trackers[name] = Tracker(model, TrackerOptions(engine=engine),
                                         checkpoint=checkpoint)
            except ValueError as error:
                reason = str(error)
            else:
                print(f'built {name} in {time.perf_counter() - start:.1f} s', file=sys.stderr,
                      flush=True)
        if reason is not None:
            skipped.append({'runner': name, 'reason': reason})
    return trackers, skipped


def timed(runner: Runner, frame: np.ndarray) -> float:
    """Wall milliseconds of one call."""
    start = time.perf_counter()
    runner(frame)
    return (time.perf_counter() - start) * MS


def interleaved(runners: Dict[str, Runner], frames: Sequence[np.ndarray], rounds: int,
                warmup: int) -> Dict[str, List[float]]:
    """Milliseconds per frame of every runner; each round runs all in a rotated order."""
    names = list(runners)
    samples: Dict[str, List[float]] = {name: [] for name in names}
    for index in range(warmup + rounds):
        frame = frames[index % len(frames)]
        shift = index % len(names)
        for name in names[shift:] + names[:shift]:
            elapsed = timed(runners[name], frame)
            if index >= warmup:
                samples[name].append(elapsed)
    return samples


def statistics_row(samples: Sequence[float], official: Sequence[float]) -> Dict[str, float]:
    """Median, quartiles, IQR, ratio of medians and median paired ratio against ``official``."""
    q25, median, q75 = np.percentile(samples, [25, 50, 75])
    return {'median_ms': float(median), 'q25_ms': float(q25), 'q75_ms': float(q75),
            'iqr_ms': float(q75 - q25),
            'vs_official': statistics.median(official) / float(median),
            'paired_vs_official': float(np.median(np.asarray(official) / np.asarray(samples)))}


def run_group(config: str, targets: int, model: torch.nn.Module, trackers: Dict[str, Tracker],
              device: torch.device, rounds: int, warmup: int) -> List[Dict]:
    """Time the official procedure and every tracker for one target count."""
    frames, boxes = make_frames(), make_boxes(targets)
    official = Baseline(model, device)
    runners: Dict[str, Runner] = {OFFICIAL: official.track}
    for box in boxes:
        official.initialize(frames[0], box)
    for name, tracker in trackers.items():
        tracker.clear()
        for box in boxes:
            tracker.initialize(frames[0], box)
        runners[name] = tracker.track
    samples = interleaved(runners, frames, rounds, warmup)
    return [{'config': config, 'targets': targets, 'runner': name, 'rounds': len(values),
             **statistics_row(values, samples[OFFICIAL]), 'samples_ms': values}
            for name, values in samples.items()]


def auto_choice(model: torch.nn.Module, device: torch.device) -> Dict[str, str]:
    """Return what ``precision=auto`` picks for this model on this machine (OpenVINO), and why."""
    choice = choose_precision('auto', 'openvino', device, model.config.width)
    return {'config': model.config.name, 'precision': choice.precision, 'reason': choice.reason}


def format_table(rows: Sequence[Dict]) -> str:
    """Fixed-width table: median and IQR ms per frame, ratios against the official way."""
    lines = ['{:<13} {:>7} {:<36} {:>9} {:>8} {:>11} {:>8}'.format(
        'config', 'targets', 'runner', 'median', 'IQR', 'vs official', 'paired')]
    for row in rows:
        lines.append('{:<13} {:>7} {:<36} {:>9.1f} {:>8.1f} {:>10.2f}x {:>7.2f}x'.format(
            row['config'], row['targets'], row['runner'], row['median_ms'], row['iqr_ms'],
            row['vs_official'], row['paired_vs_official']))
    return '\n'.join(lines)


def _model(config: str, weights: Optional[str], folder: Path) -> Tuple[torch.nn.Module, Path]:
    """Return the model to time and the checkpoint its exports are cached for."""
    if weights:
        model, _ = load_checkpoint(weights)
        return model, Path(weights)
    torch.manual_seed(0)
    model = build_model(config)
    return model, save_checkpoint(model, folder / f'{config}.pth')


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--configs', nargs='+', default=['small', 'simtrack-b16'],
                        help='model configs (default: small simtrack-b16)')
    parser.add_argument('--targets', nargs='+', type=int, default=[1, 4],
                        help='target counts (default: 1 4)')
    parser.add_argument('--rounds', type=int, default=0,
                        help=f'measured rounds per group (default per config: {ROUNDS})')
    parser.add_argument('--warmup', type=int, default=WARMUP, help='warm-up rounds')
    parser.add_argument('--weights', help='time this checkpoint instead of random weights of '
                                          'each of --configs')
    parser.add_argument('--only', nargs='+', default=[], metavar='RUNTIME:PRECISION',
                        help='time only these candidates, e.g. openvino:fp32 openvino:int8')
    parser.add_argument('--device', default='cpu', help='cpu (default) or cuda')
    parser.add_argument('--json', help='write the machine, rows and skipped runners here')
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    machine = {**machine_info(), **runtime_info()}
    print('\n'.join(f'# {key}: {value}' for key, value in machine.items()), flush=True)
    rows, skipped, choices = [], [], []
    with tempfile.TemporaryDirectory(prefix='runtime_benchmark_') as folder:
        for config in [''] if args.weights else args.configs:
            model, checkpoint = _model(config, args.weights, Path(folder))
            config = model.config.name
            choices.append(auto_choice(model, device))
            print(f'# precision auto for {config}: {choices[-1]["precision"]} '
                  f'({choices[-1]["reason"]})', flush=True)
            trackers, missing = build_runners(model, checkpoint, device, args.only)
            skipped += [{'config': config, **entry} for entry in missing]
            for targets in args.targets:
                rounds = args.rounds or ROUNDS.get(config, DEFAULT_ROUNDS)
                rows += run_group(config, targets, model, trackers, device, rounds,
                                  args.warmup)
                print(f'done: {config}, {targets} target(s)', file=sys.stderr, flush=True)
    print(f'\nframe {FRAME_WIDTH}x{FRAME_HEIGHT}; ms per frame (all targets); vs official = '
          'official median / runner median; paired = median of per-round ratios')
    print(format_table(rows))
    for entry in skipped:
        print(f'skipped: {entry["config"]} {entry["runner"]}: {entry["reason"]}')
    if args.json:
        with open(args.json, 'w', encoding='utf-8') as handle:
            json.dump({'machine': machine, 'auto': choices, 'rows': rows, 'skipped': skipped},
                      handle, indent=2)
    return 0


if __name__ == '__main__':
    sys.exit(main())
