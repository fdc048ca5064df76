"""What a run shows and leaves behind (rank 0 only): console, metrics files, plots, TensorBoard.

Files in the output folder:

* ``metrics.jsonl``: one object per epoch, ``{"epoch": n, "train": {...}, "val": {...}}``
  (loss terms, accuracy, macro-F1 and per-class values, the always-``normal`` baseline, the
  confusion matrix, box IoU), the format :func:`~simtrack_ros.training.plots.plot_curves` reads;
* ``steps.jsonl``: one object per optimizer step (loss terms, LR, gradient norm; rank 0's batch);
* ``curves.png`` and ``confusion.png``, redrawn after every epoch;
* ``tensorboard/`` when ``torch.utils.tensorboard`` can be imported (``pip install tensorboard``).

A resumed run first cuts both JSON-lines files back to its checkpoint, so they hold each epoch and
step once.
"""
from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, Mapping, Optional

from simtrack_ros.training.checkpointing import plain
from simtrack_ros.training.plots import plot_confusion, plot_curves

METRICS_FILE = 'metrics.jsonl'
STEPS_FILE = 'steps.jsonl'
CURVES_FILE = 'curves.png'
CONFUSION_FILE = 'confusion.png'


def _truncate_jsonl(path: Path, keep: Callable[[Dict[str, Any]], bool]) -> None:
    """Rewrite ``path`` (atomically) with the lines ``keep`` accepts; a torn line is dropped."""
    if not path.is_file():
        return
    lines = []
    for line in path.read_text(encoding='utf-8').splitlines():
        try:
            if keep(json.loads(line)):
                lines.append(line + '\n')
        except json.JSONDecodeError:
            continue
    temp = path.with_name(f'.{path.name}.tmp')
    temp.write_text(''.join(lines), encoding='utf-8')
    os.replace(temp, path)


def _scalars(prefix: str, values: Mapping[str, Any]) -> Iterator[tuple]:
    """(tag, value) of the finite numbers in a nested dict (TensorBoard tags)."""
    for key, value in values.items():
        tag = f'{prefix}/{key}'
        if isinstance(value, Mapping):
            yield from _scalars(tag, value)
        elif isinstance(value, (int, float)) and not isinstance(value, bool) \
                and math.isfinite(value):
            yield tag, value


class RunLog:
    """Writes the run's metrics files, plots and TensorBoard events; prints epoch summaries."""

    def __init__(self, out: Path, print_fn: Callable[[str], None], tensorboard: bool = True
                 ) -> None:
        self.out = out
        self.print = print_fn
        self.metrics_path = out / METRICS_FILE
        self.steps_path = out / STEPS_FILE
        self._steps = None
        self.writer = None
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:
                self.print('TensorBoard is not installed: no event files (pip install '
                           'tensorboard)')
            else:
                self.writer = SummaryWriter(str(out / 'tensorboard'))

    def rewind(self, epoch: int, step: int) -> None:
        """Forget what a run wrote after its checkpoint (``epoch`` epochs, ``step`` steps)."""
        _truncate_jsonl(self.metrics_path, lambda row: row.get('epoch', 0) <= epoch)
        _truncate_jsonl(self.steps_path, lambda row: row.get('step', 0) <= step)

    def step(self, record: Mapping[str, Any]) -> None:
        """Append one optimizer step's record to ``steps.jsonl``."""
        if self._steps is None:
            self._steps = open(self.steps_path, 'a', encoding='utf-8')
        self._steps.write(json.dumps(plain(record)) + '\n')

    def epoch(self, row: Mapping[str, Any], class_names: Optional[list] = None) -> None:
        """Append the epoch's row to ``metrics.jsonl``, redraw the plots, feed TensorBoard."""
        row = plain(row)
        if self._steps is not None:
            self._steps.flush()
        with open(self.metrics_path, 'a', encoding='utf-8') as stream:
            stream.write(json.dumps(row) + '\n')
            stream.flush()
            os.fsync(stream.fileno())
        plot_curves(self.metrics_path, self.out / CURVES_FILE)
        confusion = (row.get('val') or {}).get('confusion')
        if confusion is not None and class_names:
            plot_confusion(confusion, class_names, self.out / CONFUSION_FILE,
                           title=f'validation, epoch {row["epoch"]}')
        if self.writer is not None:
            for phase in ('train', 'val'):
                for tag, value in _scalars(phase, row.get(phase) or {}):
                    if 'confusion' not in tag:
                        self.writer.add_scalar(tag, value, row['epoch'])
            self.writer.flush()

    def close(self) -> None:
        """Close the open files."""
        if self._steps is not None:
            self._steps.close()
            self._steps = None
        if self.writer is not None:
            self.writer.close()
            self.writer = None
