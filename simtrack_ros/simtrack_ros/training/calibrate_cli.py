"""``simtrack-calibrate``: fit the challenge calibration of a checkpoint on labelled sequences.

Tracks every sequence of ``DATA`` (one-pass, from the first frame's box, as ``simtrack-eval``)
with the checkpoint's multi-label head, records the head's logits and the measured cues
(:mod:`simtrack_ros.tracking.challenge_cues`) per frame, fits one logistic regression per class
(:mod:`simtrack_ros.model.challenge_calibration`) against the sequences' labels and writes the
checkpoint with the calibration to ``--out``. Use sequences the head was not trained on, and
the search factor the tracker will run with; judge the result with ``simtrack-eval`` on other
held-out sequences. Prints per-class F1 before and after on the fitting sequences and writes
``<out>.calibration.json`` with them. Exit status 0 on success, 1 when tracking a sequence
fails, 2 for bad arguments or data.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path
import sys
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch

from simtrack_ros.challenges import CHALLENGE_NAMES, single_label
from simtrack_ros.data.sequences import require_sequences
from simtrack_ros.evaluation.ope import SequenceResult
from simtrack_ros.evaluation.runner import evaluate, SIMTRACK, TrackerSpec
from simtrack_ros.model.challenge_calibration import (
    DEFAULT_L2, fitted_by_logistic_regression, head_only_classes, MIN_EXAMPLES)
from simtrack_ros.model.checkpoint import load_checkpoint, save_checkpoint
from simtrack_ros.tracking.challenge_cues import CUE_NAMES
from simtrack_ros.tracking.tracker import TrackerOptions
from simtrack_ros.training.metrics import ClassificationMeter

DEFAULT_SPLIT = 'calib'


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog='simtrack-calibrate', description=__doc__.split('\n')[0].split(': ', 1)[1])
    parser.add_argument('data', help='dataset root (GOT-10k/MVTD layout, annotations.jsonl '
                                     'per sequence)')
    parser.add_argument('--weights', required=True,
                        help='checkpoint with a trained multi-label challenge head (.pth)')
    parser.add_argument('--out', required=True, help='checkpoint to write (.pth)')
    parser.add_argument('--split', default=None,
                        help=f'split folder to fit on (default {DEFAULT_SPLIT!r} when DATA has '
                             'one, else every sequence under DATA)')
    parser.add_argument('--search-factor', type=float, default=TrackerOptions.search_factor,
                        help='search crop side / target scale the tracker runs with (default '
                             f'{TrackerOptions.search_factor:g})')
    parser.add_argument('--l2', type=float, default=DEFAULT_L2,
                        help='L2 penalty on the standardised coefficients (default '
                             f'{DEFAULT_L2:g})')
    parser.add_argument('--workers', type=int, default=1, help='tracking processes (default 1)')
    parser.add_argument('--no-progress', action='store_true', help='no progress bar')
    return parser


def fitting_data(results: Sequence[SequenceResult], class_names: Sequence[str]
                 ) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Return (inputs N x (C + F), labels N x C, known N x C) of the usable frames.

    Usable: the frames with logits, cues and labels.

    Label columns follow ``class_names`` (the annotation files use ``CHALLENGE_NAMES`` order).
    """
    columns = [CHALLENGE_NAMES.index(name) for name in class_names]
    inputs, labels, known = [], [], []
    for result in results:
        if result.logits is None or result.cues is None or result.labels is None:
            continue
        keep = (np.isfinite(result.logits).all(1) & np.isfinite(result.cues).all(1)
                & np.isfinite(result.labels[:, columns]).all(1))
        inputs.append(np.concatenate([result.logits[keep], result.cues[keep]], axis=1))
        labels.append(result.labels[keep][:, columns])
        known.append(result.judged[keep][:, columns])
    if not inputs or not sum(len(part) for part in inputs):
        raise ValueError('no frame has both head logits and challenge labels: the sequences '
                         'need annotations.jsonl files')
    return np.concatenate(inputs), np.concatenate(labels), np.concatenate(known)


def per_class_f1(probabilities: np.ndarray, labels: np.ndarray, known: np.ndarray,
                 class_names: Sequence[str]) -> Dict[str, Optional[float]]:
    """Return the multi-label F1 per class (judged labels only), as ``simtrack-eval`` does."""
    meter = ClassificationMeter(class_names, multi_label=True)
    single = [class_names.index(single_label(dict(zip(class_names, row)))) for row in labels]
    meter.update(torch.from_numpy(probabilities), torch.tensor(single), torch.from_numpy(known),
                 multi_labels=torch.from_numpy(labels), probabilities=True)
    return meter.compute()['multi_label']['per_class_f1']


def _mean(scores: Dict[str, Optional[float]]) -> float:
    values = [v for v in scores.values() if v is not None]
    return float(np.mean(values)) if values else float('nan')


def _table(before: Dict[str, Optional[float]], after: Dict[str, Optional[float]],
           support: np.ndarray) -> str:
    def cell(value: Optional[float], width: int) -> str:
        return f'{value:{width}.3f}' if value is not None else f'{"-":>{width}s}'

    lines = [f'{"class":24s} {"support":>7s} {"head F1":>8s} {"calibrated":>10s}']
    for (name, old), new, count in zip(before.items(), after.values(), support):
        lines.append(f'{name:24s} {int(count):7d} {cell(old, 8)} {cell(new, 10)}')
    lines.append(f'{"macro F1":24s} {"":7s} {_mean(before):8.3f} {_mean(after):10.3f}')
    return '\n'.join(lines)


def main(argv: Optional[List[str]] = None) -> int:
    args = _parser().parse_args(argv)
    data, out = Path(args.data), Path(args.out)
    try:
        TrackerOptions(search_factor=args.search_factor)
        if args.workers < 1 or not args.l2 >= 0:
            raise ValueError('--workers must be >= 1 and --l2 >= 0')
        if out.suffix != '.pth':
            raise ValueError(f'--out {out}: write a .pth checkpoint (export it afterwards)')
        model, report = load_checkpoint(args.weights)
        if not (model.cls_head_trained and model.config.multi_label):
            raise ValueError(f'{args.weights}: the calibration needs a trained multi-label '
                             'challenge head')
        split = args.split or (DEFAULT_SPLIT if (data / DEFAULT_SPLIT).is_dir() else None)
        sequences = require_sequences(data, split)
    except (OSError, ValueError) as error:
        print(f'simtrack-calibrate: {error}', file=sys.stderr)
        return 2
    where = f'{data}/{split}' if split else str(data)
    print(f'fitting the challenge calibration of {args.weights} on {len(sequences)} sequences '
          f'in {where} (search factor {args.search_factor:g})')
    spec = TrackerSpec(SIMTRACK, str(args.weights), search_factor=args.search_factor,
                       measure_cues=True)
    try:
        results = evaluate([spec], sequences, args.workers, progress=not args.no_progress)
    except RuntimeError as error:
        print(f'simtrack-calibrate: {error}', file=sys.stderr)
        return 1
    names = model.class_names
    try:
        inputs, labels, known = fitting_data(results[SIMTRACK], names)
        calibration = fitted_by_logistic_regression(names, CUE_NAMES, inputs, labels, known,
                                                    l2=args.l2)
    except ValueError as error:
        print(f'simtrack-calibrate: {error}', file=sys.stderr)
        return 2
    head_only = [names[c] for c in head_only_classes(labels, known)]
    if head_only:
        print(f'simtrack-calibrate: warning: fewer than {MIN_EXAMPLES} labelled frames with or '
              f'without {", ".join(head_only)} in these sequences: not fitted, they keep the '
              "head's own probability (calibrate on sequences that show them)", file=sys.stderr)
    head = 1.0 / (1.0 + np.exp(-inputs[:, :len(names)]))
    before = per_class_f1(head, labels, known, names)
    after = per_class_f1(calibration.probabilities(inputs[:, :len(names)],
                                                   inputs[:, len(names):]),
                         labels, known, names)
    print(f'{len(inputs)} frames; F1 on the fitting sequences (judge on held-out ones with '
          'simtrack-eval):')
    print(_table(before, after, (labels * known).sum(axis=0)))
    model.challenge_calibration = calibration
    fit = {'data': where, 'sequences': len(sequences), 'frames': int(len(inputs)),
           'search_factor': args.search_factor, 'l2': args.l2, 'source': str(args.weights),
           'f1_head': before, 'f1_calibrated': after, 'head_only': head_only}
    save_checkpoint(model, out, metadata={**report.metadata, 'challenge_calibration_fit': fit})
    summary = out.with_name(out.name + '.calibration.json')
    summary.write_text(json.dumps({**fit, 'calibration': calibration.to_dict()}, indent=1))
    print(f'wrote {out} and {summary}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
