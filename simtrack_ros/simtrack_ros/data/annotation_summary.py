"""What a set of ``annotations.jsonl`` files says: label counts and agreement between sources.

Counts: frames per class (the merged flags) and flags set per class and source. Agreement:
for every pair of sources that judged the same class on the same frames, the share of frames
on which they agree and Cohen's kappa, ``(p_o - p_e) / (1 - p_e)`` with ``p_o`` the observed
agreement and ``p_e`` the agreement expected from the two sources' rates alone (None when
``p_e`` is 1: both constant, nothing to tell). The sources compared are the record's
``cv_response`` (``cv``), ``vlm_response`` (``vlm``), the dataset's own labels recomputed from
its label files (``dataset``) and, when given, the flags of a reference file of each sequence
(``reference``, e.g. the synthetic generator's exact labels).
"""
from __future__ import annotations

from itertools import combinations
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence as Seq

import numpy as np

from simtrack_ros.challenges import CHALLENGE_NAMES
from simtrack_ros.data.annotations import read_annotations, SOURCES
from simtrack_ros.data.dataset_labels import (LOW_RESOLUTION_AREA, SCALE_RATIO,
                                              sequence_labels)
from simtrack_ros.data.sequences import read_sequence

#: A source's view of one frame: class name -> flag.
View = Dict[str, bool]


def cohen_kappa(a: Seq[bool], b: Seq[bool]) -> Optional[float]:
    """Cohen's kappa of two binary raters over the same items (None when undefined)."""
    x, y = np.asarray(a, bool), np.asarray(b, bool)
    if len(x) == 0:
        return None
    observed = float(np.mean(x == y))
    expected = float(x.mean() * y.mean() + (1 - x.mean()) * (1 - y.mean()))
    if expected >= 1.0:
        return None
    return (observed - expected) / (1.0 - expected)


def _views(path: Path, output: str, reference: Optional[str], scale_ratio: float,
           min_area: float, problems: List[str]) -> List[Dict[str, View]]:
    """Return, per record of one sequence, each source's view of the frame."""
    result = read_annotations(path / output)
    problems += [f'{path / output}:{line}: {why}' for line, why in result.errors]
    dataset = sequence_labels(read_sequence(path), scale_ratio=scale_ratio, min_area=min_area)
    truth: Dict[int, View] = {}
    if reference:
        for record in read_annotations(path / reference).records:
            truth[record.frame_index] = {n: f.flag for n, f in record.flags.items()}
    frames = []
    for record in result.records:
        views: Dict[str, View] = {'merged': {n: f.flag for n, f in record.flags.items()}}
        if record.cv_response is not None:
            views['cv'] = {n: bool(v) for n, v in record.cv_response.items()}
        if record.vlm_response is not None:
            views['vlm'] = {n: bool(v['flag']) for n, v in record.vlm_response.items()}
        if record.frame_index < len(dataset):
            views['dataset'] = {n: f.flag for n, f in dataset[record.frame_index].flags.items()}
        if record.frame_index in truth:
            views['reference'] = truth[record.frame_index]
        views['sources'] = {f'{n}:{f.source}': f.flag for n, f in record.flags.items()}
        frames.append(views)
    return frames


def summarize(paths: Seq[Path], output: str, reference: Optional[str] = None,
              scale_ratio: float = SCALE_RATIO, min_area: float = LOW_RESOLUTION_AREA
              ) -> Dict[str, Any]:
    """Return counts and agreement over the records of the sequences in ``paths`` (JSON)."""
    problems: List[str] = []
    frames: List[Dict[str, View]] = []
    for path in paths:
        try:
            frames += _views(Path(path), output, reference, scale_ratio, min_area, problems)
        except (OSError, ValueError) as exc:
            problems.append(f'{path}: {type(exc).__name__}: {exc}')
    counts = {name: sum(bool(f['merged'].get(name)) for f in frames)
              for name in CHALLENGE_NAMES if name != 'normal'}
    counts['normal'] = sum(not any(f['merged'].values()) for f in frames)
    by_source = {source: {name: sum(bool(f['sources'].get(f'{name}:{source}')) for f in frames)
                          for name in CHALLENGE_NAMES}
                 for source in SOURCES}
    by_source = {s: {n: c for n, c in per.items() if c} for s, per in by_source.items()
                 if any(per.values())}
    compared = ['dataset', 'cv', 'vlm'] + (['reference'] if reference else [])
    agreement: Dict[str, Dict[str, Dict[str, Any]]] = {}
    for first, second in combinations(compared, 2):
        pair: Dict[str, Dict[str, Any]] = {}
        for name in CHALLENGE_NAMES:
            both = [(f[first][name], f[second][name]) for f in frames
                    if name in f.get(first, {}) and name in f.get(second, {})]
            if both:
                a, b = zip(*both)
                pair[name] = {'frames': len(both),
                              'agreement': float(np.mean(np.equal(a, b))),
                              'kappa': cohen_kappa(a, b),
                              f'{first}_positive': int(sum(a)),
                              f'{second}_positive': int(sum(b))}
        if pair:
            agreement[f'{first} vs {second}'] = pair
    return {'sequences': len(paths), 'frames': len(frames), 'class_counts': counts,
            'flags_by_source': by_source, 'agreement': agreement, 'problems': problems}


def _number(value: Optional[float]) -> str:
    return 'n/a' if value is None else f'{value:.2f}'


def format_summary(summary: Mapping[str, Any]) -> str:
    """Format the summary as console tables."""
    lines = [f'{summary["frames"]} annotated frame(s) in {summary["sequences"]} sequence(s)',
             '', f'{"class":<24}{"frames":>8}  flags set by source']
    for name in CHALLENGE_NAMES:
        sources = ', '.join(f'{source} {per[name]}'
                            for source, per in summary['flags_by_source'].items() if name in per)
        lines.append(f'{name:<24}{summary["class_counts"][name]:>8}  {sources}')
    for pair, classes in summary['agreement'].items():
        lines += ['', f'agreement {pair}:', f'{"class":<24}{"frames":>8}{"agree":>8}'
                  f'{"kappa":>8}{"positives":>12}']
        for name, row in classes.items():
            positives = '/'.join(str(v) for k, v in row.items() if k.endswith('_positive'))
            lines.append(f'{name:<24}{row["frames"]:>8}{row["agreement"]:>8.2f}'
                         f'{_number(row["kappa"]):>8}{positives:>12}')
    if summary['problems']:
        lines += ['', f'{len(summary["problems"])} problem(s):']
        lines += [f'  {problem}' for problem in summary['problems'][:20]]
    return '\n'.join(lines)
