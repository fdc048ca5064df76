"""Training plots as PNG files: metric curves from the metrics file, confusion matrices.

Drawn with matplotlib's Agg canvas (no display, no pyplot state); files are written atomically.
The metrics file has one JSON object per epoch: ``{"epoch": int, "train": {...}, "val": {...}}``
where each phase holds scalars (``loss``, ``giou``, ``l1``, ``cls``, ``accuracy``, ``macro_f1``,
``mean_iou``, ``share_iou_50``), optionally ``baseline`` ({``accuracy``, ``macro_f1``}) and
``multi_label`` ({``macro_f1``, ``baseline``: {``macro_f1``}}), as the metric meters give them.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
import tempfile
from typing import Any, Dict, List, Sequence, Tuple, Union

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator
import numpy as np

PathLike = Union[str, 'os.PathLike[str]']
#: Panels of the curve plot: title and the phase keys (dotted paths) drawn in it.
PANELS: Tuple[Tuple[str, Tuple[str, ...]], ...] = (
    ('loss', ('loss', 'giou', 'l1', 'cls')),
    ('classification', ('accuracy', 'macro_f1', 'multi_label.macro_f1')),
    ('box', ('mean_iou', 'share_iou_50')),
)
PHASES = ('train', 'val')


def read_metrics(path: PathLike) -> List[Dict[str, Any]]:
    """Epoch objects of a metrics JSON-lines file (blank lines skipped)."""
    rows = []
    with open(path, encoding='utf-8') as stream:
        for number, line in enumerate(stream, 1):
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError as error:
                    raise ValueError(f'{path}:{number}: not JSON: {error}') from None
    return rows


def save_figure(figure: Figure, out_png: PathLike) -> Path:
    """Render to a temporary file next to ``out_png`` and rename it into place."""
    out = Path(out_png)
    out.parent.mkdir(parents=True, exist_ok=True)
    FigureCanvasAgg(figure)
    handle, tmp = tempfile.mkstemp(prefix=f'.{out.name}.', suffix='.tmp', dir=out.parent)
    try:
        with os.fdopen(handle, 'wb') as stream:
            figure.savefig(stream, format='png')
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)          # mkstemp makes 0600; a plot is for everyone
        os.replace(tmp, out)
    except BaseException:
        os.unlink(tmp)
        raise
    return out


def metric_series(rows: Sequence[Dict[str, Any]], phase: str, key: str,
                  baseline: bool = False) -> Tuple[List[float], List[float]]:
    """(epochs, values) of one scalar, skipping epochs where it is missing or null.

    ``key`` is a dotted path into the phase; ``baseline`` reads the always-normal value, stored
    under ``baseline`` next to the key (``multi_label.baseline.macro_f1``).
    """
    path = key.split('.')
    if baseline:
        path.insert(-1, 'baseline')
    xs, ys = [], []
    for row in rows:
        value = row.get(phase)
        for part in path:
            value = value.get(part) if isinstance(value, dict) else None
        if isinstance(value, (int, float)) and not isinstance(value, bool) and 'epoch' in row:
            xs.append(row['epoch'])
            ys.append(float(value))
    return xs, ys


def plot_curves(metrics_jsonl_path: PathLike, out_png: PathLike) -> Path:
    """Loss, classification and box curves per epoch (train solid, val dashed, baseline dotted).

    Panels without data are left out; raises ValueError for a file without epochs.
    """
    rows = read_metrics(metrics_jsonl_path)
    if not rows:
        raise ValueError(f'{metrics_jsonl_path}: no epochs to plot')
    panels = []
    for title, keys in PANELS:
        lines = []
        for number, key in enumerate(keys):
            colour = f'C{number}'
            for phase, style in zip(PHASES, ('-', '--')):
                series = metric_series(rows, phase, key)
                lines.append((f'{phase} {key}', style, colour, series))
            series = metric_series(rows, 'val', key, baseline=True)
            lines.append((f'always-normal {key}', ':', colour, series))
        lines = [line for line in lines if line[3][0]]
        if lines:
            panels.append((title, lines))
    if not panels:
        raise ValueError(f'{metrics_jsonl_path}: no known metric to plot')
    figure = Figure(figsize=(6 * len(panels), 4.5), layout='constrained')
    for index, (title, lines) in enumerate(panels):
        axes = figure.add_subplot(1, len(panels), index + 1)
        for label, style, colour, (xs, ys) in lines:
            axes.plot(xs, ys, style, color=colour, marker='o', markersize=3, label=label)
        axes.xaxis.set_major_locator(MaxNLocator(integer=True))
        axes.set_title(title)
        axes.set_xlabel('epoch')
        axes.grid(alpha=0.3)
        axes.legend(fontsize='small')
    return save_figure(figure, out_png)


def row_normalised(matrix: Sequence[Sequence[int]]) -> np.ndarray:
    """Each row divided by its sum (the share of the true class); rows without samples are 0."""
    counts = np.asarray(matrix, dtype=np.float64)
    totals = counts.sum(axis=1, keepdims=True)
    return np.divide(counts, totals, out=np.zeros(counts.shape), where=totals > 0)


def plot_confusion(matrix: Sequence[Sequence[int]], class_names: Sequence[str],
                   out_png: PathLike, title: str = 'confusion matrix') -> Path:
    """Confusion matrix (rows true, columns predicted): counts written, colours row-normalised."""
    counts = np.asarray(matrix, dtype=np.int64)
    n = len(class_names)
    if counts.shape != (n, n):
        raise ValueError(f'matrix must be {n}×{n} for {n} class names, got {counts.shape}')
    shares = row_normalised(counts)
    size = 2.0 + 0.7 * n
    figure = Figure(figsize=(size + 1.5, size), layout='constrained')
    axes = figure.add_subplot()
    image = axes.imshow(shares, cmap='Blues', vmin=0.0, vmax=1.0)
    figure.colorbar(image, ax=axes, label='share of the true class')
    for row in range(n):
        for col in range(n):
            axes.text(col, row, str(counts[row, col]), ha='center', va='center', fontsize=8,
                      color='white' if shares[row, col] > 0.5 else 'black')
    axes.set_xticks(range(n), class_names, rotation=45, ha='right')
    axes.set_yticks(range(n), class_names)
    axes.set_xlabel('predicted')
    axes.set_ylabel('true')
    axes.set_title(title)
    return save_figure(figure, out_png)
