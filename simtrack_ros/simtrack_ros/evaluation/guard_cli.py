"""``simtrack-guard``: judge a runtime and precision of a checkpoint against fp32 PyTorch.

Builds the fp32 PyTorch reference tracker and the candidate tracker from one checkpoint (the
candidate through the engine factory, so an exported runtime uses the cached export beside
the checkpoint, or the file given with ``--exported``), runs both over held-out sequences
with ground truth (:func:`~simtrack_ros.evaluation.accuracy_guard.run_guard`), prints the
table and writes the result beside the candidate's file: ``<name>.guard.json`` beside an
exported search graph ``<name>.onnx`` (the node shows it at start-up), or
``<checkpoint stem>.torch-<precision>.guard.json`` beside the checkpoint for the PyTorch
runtime. Exit status 0 when the candidate passed, 1 when it missed (the output says by how
much), 2 for bad input (arguments, checkpoint, exported file, data).
"""
from __future__ import annotations

import argparse
from pathlib import Path
import sys
from typing import List, Optional

from simtrack_ros.data.sequences import require_sequences
from simtrack_ros.evaluation.accuracy_guard import run_guard, write_guard
from simtrack_ros.export.cache import file_sha256
from simtrack_ros.export.onnx_export import load_exported
from simtrack_ros.model.checkpoint import load_checkpoint
from simtrack_ros.tracking.engine import EngineOptions
from simtrack_ros.tracking.tracker import Tracker, TrackerOptions

RUNTIMES = ('openvino', 'onnxruntime', 'torch')
PRECISIONS = ('int8', 'bf16', 'fp16', 'fp32')


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog='simtrack-guard', description=__doc__.split('\n')[0].split(': ', 1)[1])
    parser.add_argument('checkpoint', help='the source checkpoint (.pth; the fp32 reference)')
    parser.add_argument('--data', required=True,
                        help='dataset root with held-out sequences (GOT-10k layout)')
    parser.add_argument('--split', default='test',
                        help="split folder under DATA (default 'test'; '' for DATA itself)")
    parser.add_argument('--runtime', default='openvino', choices=RUNTIMES,
                        help='runtime of the candidate (default openvino)')
    parser.add_argument('--precision', default='int8', choices=PRECISIONS,
                        help='precision of the candidate (default int8)')
    parser.add_argument('--exported', default=None,
                        help='judge this exported search graph (.onnx, exported from '
                             'CHECKPOINT) instead of the cached export')
    parser.add_argument('--device', default='cpu',
                        help='device of both trackers: cpu (default), cuda, cuda:N')
    parser.add_argument('--sequences', type=int, default=None,
                        help='use the first N sequences (default: all); the first is the clip')
    parser.add_argument('--clip-frames', type=int, default=None,
                        help='frames of the first sequence compared box by box (default: all)')
    parser.add_argument('--json', action='store_true',
                        help='print the result as JSON instead of the table')
    return parser


def _check_counts(args: argparse.Namespace) -> None:
    for name in ('sequences', 'clip_frames'):
        value = getattr(args, name)
        if value is not None and value < 1:
            raise ValueError(f'--{name.replace("_", "-")} must be >= 1, got {value}')


def _candidate(args: argparse.Namespace, model, checkpoint: Path) -> Tracker:
    """Build the candidate tracker: the cached export of ``model``, or the ``--exported`` file."""
    engine = EngineOptions(device=args.device, runtime=args.runtime, precision=args.precision)
    options = TrackerOptions(engine=engine)
    if args.exported is None:
        return Tracker(model, options, checkpoint=checkpoint)
    exported = load_exported(args.exported)
    source = exported.metadata.checkpoint_sha256
    if source != file_sha256(checkpoint):
        raise ValueError(f'{args.exported}: exported from another checkpoint (sha256 '
                         f'{source[:16] or "unknown"}..., {checkpoint} is '
                         f'{file_sha256(checkpoint)[:16]}...); the reference must be its source')
    return Tracker(exported, options)


def _result_path(candidate: Tracker, checkpoint: Path) -> Path:
    guard_file = getattr(candidate.model, 'guard_file', None)
    if guard_file is not None:
        return guard_file(candidate.engine.precision)
    return checkpoint.with_name(
        f'{checkpoint.stem}.torch-{candidate.engine.precision}.guard.json')


def main(argv: Optional[List[str]] = None) -> int:
    args = _parser().parse_args(argv)
    checkpoint = Path(args.checkpoint)
    try:
        _check_counts(args)
        sequences = require_sequences(Path(args.data), args.split or None)[:args.sequences]
        model, _ = load_checkpoint(checkpoint)
        reference = Tracker(model, TrackerOptions(engine=EngineOptions(
            device=args.device, runtime='torch', precision='fp32')))
        candidate = _candidate(args, model, checkpoint)
    except (OSError, ValueError) as error:
        print(f'simtrack-guard: {error}', file=sys.stderr)
        return 2
    engine = candidate.engine
    print(f'candidate: {engine.describe()}; {engine.choice.reason}; {len(sequences)} '
          f'sequence(s) from {args.data}', file=sys.stderr)
    result = run_guard(reference, candidate, sequences, clip_frames=args.clip_frames,
                       progress=lambda line: print(line, file=sys.stderr))
    written = write_guard(result, _result_path(candidate, checkpoint))
    print(result.to_json() if args.json else f'{result.table()}\nwrote {written}')
    return 0 if result.passed else 1


if __name__ == '__main__':
    sys.exit(main())
