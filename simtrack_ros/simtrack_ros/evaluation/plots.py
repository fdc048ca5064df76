"""Evaluation plots as PNG files: success and precision curves, per-attribute AUC bars.

Drawn from :func:`~simtrack_ros.evaluation.ope.summarize` output with matplotlib's Agg canvas
and written atomically (the training plots' writer); the confusion matrix is the training
tools' :func:`~simtrack_ros.training.plots.plot_confusion`.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, Mapping

from matplotlib.figure import Figure
import numpy as np

from simtrack_ros.challenges import CHALLENGE_NAMES
from simtrack_ros.training.plots import PathLike, plot_confusion, save_figure

Summaries = Mapping[str, Mapping[str, Any]]


def _curve(axes: Any, summaries: Summaries, key: str, score: str, title: str,
           xlabel: str) -> None:
    """One panel: ``curves[key]`` of every tracker, labelled with its ``score``."""
    for name, summary in summaries.items():
        values = summary['curves'][key]
        if values[0] is None:
            continue
        value = summary[score]
        axes.plot(summary['curves'][f'{key}_thresholds'], values,
                  label=f'{name} [{value:.3f}]' if value is not None else name)
    axes.set(title=title, xlabel=xlabel, ylabel='share of frames', ylim=(0, 1.02))
    axes.grid(True, alpha=0.3)
    if axes.lines:
        axes.legend(loc='best', fontsize=8)


def plot_success(summaries: Summaries, out_png: PathLike) -> Path:
    """Success curves (IoU > threshold), legend with each tracker's AUC."""
    figure = Figure(figsize=(6, 4.5), layout='constrained')
    _curve(figure.add_subplot(), summaries, 'success', 'auc', 'Success plot (OPE), [AUC]',
           'overlap (IoU) threshold')
    return save_figure(figure, out_png)


def plot_precision(summaries: Summaries, out_png: PathLike) -> Path:
    """Precision (centre error <= threshold px) and normalised precision curves."""
    figure = Figure(figsize=(11, 4.5), layout='constrained')
    left, right = figure.subplots(1, 2)
    _curve(left, summaries, 'precision', 'precision_20', 'Precision plot (OPE), [at 20 px]',
           'centre error threshold (pixels)')
    _curve(right, summaries, 'norm_precision', 'norm_precision',
           'Normalised precision plot (OPE), [at 0.2]', 'normalised centre error threshold')
    return save_figure(figure, out_png)


def plot_attributes(summaries: Summaries, out_png: PathLike) -> Path:
    """Draw grouped bars: success AUC per challenge class (frames), one bar per tracker."""
    present = [name for name in CHALLENGE_NAMES
               if any(name in s['attributes'] for s in summaries.values())]
    frames: Dict[str, int] = {
        name: max(s['attributes'].get(name, {}).get('frames', 0) for s in summaries.values())
        for name in present}
    figure = Figure(figsize=(max(6.0, 1.1 * len(present) + 2), 4.5), layout='constrained')
    axes = figure.add_subplot()
    width = 0.8 / max(1, len(summaries))
    positions = np.arange(len(present))
    for index, (name, summary) in enumerate(summaries.items()):
        values = [summary['attributes'].get(a, {}).get('auc') for a in present]
        axes.bar(positions + (index - (len(summaries) - 1) / 2) * width,
                 [np.nan if v is None else v for v in values], width, label=name)
    axes.set_xticks(positions, [f'{a} ({frames[a]})' for a in present], rotation=30,
                    ha='right', fontsize=8)
    axes.set(title='Success AUC per challenge (frames)', ylabel='AUC', ylim=(0, 1))
    axes.grid(True, axis='y', alpha=0.3)
    if summaries and present:
        axes.legend(loc='best', fontsize=8)
    return save_figure(figure, out_png)


def write_plots(summaries: Summaries, folder: PathLike) -> Dict[str, Path]:
    """Every plot of an evaluation into ``folder``; returns {kind: path}.

    ``confusion_<tracker>.png`` for each tracker with classifier metrics.
    """
    folder = Path(folder)
    written = {'success': plot_success(summaries, folder / 'success.png'),
               'precision': plot_precision(summaries, folder / 'precision.png')}
    if any(s['attributes'] for s in summaries.values()):
        written['attributes'] = plot_attributes(summaries, folder / 'attributes.png')
    for name, summary in summaries.items():
        metrics = summary.get('classification')
        if metrics:
            written[f'confusion_{name}'] = plot_confusion(
                metrics['confusion'], metrics['class_names'], folder / f'confusion_{name}.png',
                title=f'{name}: challenge classes ({metrics["head"]})')
    return written
