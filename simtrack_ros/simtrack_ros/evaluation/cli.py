"""``simtrack-eval``: one-pass evaluation of SimTrack and OpenCV baselines over a dataset.

Prints the tracker table, per-attribute AUC and the challenge classifier's metrics; writes
``results.json`` and the plots (success, precision, attributes, confusion) to ``--out``.
SimTrack's tracker is built once before the run, as a worker builds it (an exported runtime
exports a .pth once into the cache beside it), so a runtime, precision or device it cannot run
with is refused up front. Exit status 0 on success, 1 when a tracker fails on a sequence (a
crash, an unreadable frame), 2 for bad arguments or data found before the run (one line
``simtrack-eval: error: ...`` on stderr).
"""
from __future__ import annotations

import argparse
import logging
from pathlib import Path
import sys
import time
from typing import Dict, List, Optional

import cv2
import torch

from simtrack_ros.data.sequences import require_sequences
from simtrack_ros.evaluation.baselines import left_out_baselines, parse_baselines
from simtrack_ros.evaluation.ope import summarize
from simtrack_ros.evaluation.plots import write_plots
from simtrack_ros.evaluation.report import console_report, write_json
from simtrack_ros.evaluation.runner import (
    evaluate, release_simtrack_tracker, SIMTRACK, simtrack_tracker, TrackerSpec)
from simtrack_ros.tracking.precision_policy import PRECISION_NAMES, RUNTIME_NAMES
from simtrack_ros.tracking.tracker import TrackerOptions

DEFAULT_SPLIT = 'test'


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog='simtrack-eval', description=__doc__.split('\n')[0].split(': ', 1)[1])
    parser.add_argument('data', help='dataset root (GOT-10k/MVTD layout)')
    parser.add_argument('--split', default=None,
                        help=f'split folder to evaluate (default: {DEFAULT_SPLIT!r} when DATA '
                             'has one, else every sequence under DATA)')
    parser.add_argument('--weights', default=None,
                        help='SimTrack checkpoint (any format load_checkpoint reads) or '
                             'exported model (.onnx, simtrack-export); omit to evaluate the '
                             'baselines only')
    parser.add_argument('--baselines', default='all',
                        help="OpenCV trackers: comma-separated names, 'all' (every one this "
                             "OpenCV build offers; the default) or 'none'")
    parser.add_argument('--workers', type=int, default=1,
                        help='processes running (tracker, sequence) pairs in parallel '
                             '(default 1: the most faithful FPS)')
    parser.add_argument('--device', default='auto',
                        help="SimTrack's device: auto (CUDA when available), cpu, cuda, cuda:N")
    parser.add_argument('--precision', default='fp32', choices=PRECISION_NAMES,
                        help="SimTrack's precision (default fp32; auto: by the hardware)")
    parser.add_argument('--runtime', default='auto', choices=RUNTIME_NAMES,
                        help="SimTrack's runtime (default auto: torch for a .pth, OpenVINO or "
                             'ONNX Runtime for an .onnx file; a .pth with an exported runtime '
                             'is exported once into a cache beside it)')
    parser.add_argument('--search-factor', type=float, default=TrackerOptions.search_factor,
                        help="SimTrack's search crop side / target scale (default "
                             f'{TrackerOptions.search_factor:g}, the official test setting; '
                             'docs/demo-model.md gives the one tuned for the demo weights)')
    parser.add_argument('--out', required=True, help='folder for results.json and the plots')
    parser.add_argument('--no-progress', action='store_true', help='no progress bar')
    return parser


def _split(data: Path, split: Optional[str]) -> Optional[str]:
    if split is None and (data / DEFAULT_SPLIT).is_dir():
        return DEFAULT_SPLIT
    return split


def _error(message: str) -> int:
    """Print ``message`` as a bad-argument error and return exit status 2."""
    print(f'simtrack-eval: error: {message}', file=sys.stderr)
    return 2


def _check_simtrack(spec: TrackerSpec, keep: bool) -> None:
    """Build SimTrack's tracker as the workers will and print it; raise if it cannot run.

    With ``keep`` (one worker: this process tracks) the runner reuses it; otherwise it is
    dropped, and the workers take an export made for it from the cache beside the checkpoint.
    """
    tracker = simtrack_tracker(spec)
    model, engine = tracker.model, tracker.engine
    print(f'weights: {spec.weights} ({model.config.name}; heads: '
          f'{", ".join(sorted(model.trained_heads)) or "none trained"}); {engine.describe()} '
          f'({engine.choice.reason}); search factor {spec.search_factor:g}')
    if not keep:
        release_simtrack_tracker(spec)


def main(argv: Optional[List[str]] = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format='%(levelname)s: %(message)s')
    if args.workers < 1:
        return _error(f'--workers must be >= 1, got {args.workers}')
    if Path(args.out).exists() and not Path(args.out).is_dir():
        return _error(f'--out {args.out} is a file: give a folder for the results')
    data = Path(args.data)
    try:
        TrackerOptions(search_factor=args.search_factor)
    except ValueError as error:
        return _error(f'--search-factor: {error}')
    split = _split(data, args.split)
    device = args.device
    if device == 'auto':
        device = 'cuda' if torch.cuda.is_available() else 'cpu'
    specs = []
    try:
        baselines = parse_baselines(args.baselines)
        if args.weights:
            specs.append(TrackerSpec(SIMTRACK, args.weights, device, args.precision,
                                     args.runtime, args.search_factor))
        specs += [TrackerSpec(name) for name in baselines]
        if not specs:
            raise ValueError('nothing to evaluate: give --weights and/or --baselines')
        sequences = require_sequences(data, split)
    except (OSError, ValueError) as error:
        return _error(str(error))
    if args.weights:
        try:
            _check_simtrack(specs[0], keep=args.workers == 1)
        except Exception as error:  # whatever stops it: a bad file, the runtime, CUDA, ...
            lines = str(error).strip().splitlines()
            return _error(f'{SIMTRACK}: {lines[0] if lines else type(error).__name__}')
    left_out = left_out_baselines(args.baselines)
    skipped: Dict[str, List[str]] = {}
    for name, reason in left_out.items():
        skipped.setdefault(reason, []).append(name)
    for reason, names in skipped.items():
        print(f'baselines skipped: {", ".join(names)}: {reason}')
    where = f'{data}/{split}' if split else str(data)
    print(f'{len(sequences)} sequences in {where}; trackers: '
          f'{", ".join(spec.name for spec in specs)}; {args.workers} worker(s)')
    start = time.perf_counter()
    try:
        results = evaluate(specs, sequences, args.workers, progress=not args.no_progress)
    except RuntimeError as error:  # a tracker failed (BrokenProcessPool: a worker died)
        print(f'simtrack-eval: {error}', file=sys.stderr)
        return 1
    summaries = {name: summarize(runs) for name, runs in results.items()}
    print(f'ran in {time.perf_counter() - start:.1f} s\n')
    print(console_report(summaries))
    out = Path(args.out)
    payload = {
        'data': str(data), 'split': split, 'weights': args.weights, 'device': device,
        'runtime': args.runtime, 'precision': args.precision,
        'search_factor': args.search_factor,
        'workers': args.workers, 'opencv': cv2.__version__, 'torch': torch.__version__,
        'sequences': [path.name for path in sequences],
        'skipped_baselines': left_out,
        'trackers': summaries,
    }
    written = [write_json(payload, out / 'results.json'), *write_plots(summaries, out).values()]
    print('\nwrote ' + ', '.join(str(path) for path in written))
    return 0


if __name__ == '__main__':
    sys.exit(main())
