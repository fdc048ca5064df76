"""Console tables and the JSON file of an evaluation run."""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Mapping, Optional, Union

from simtrack_ros.challenges import CHALLENGE_NAMES
from simtrack_ros.training.metrics import classification_report

PathLike = Union[str, 'os.PathLike[str]']
#: Columns of the tracker table: (summary key, header, format).
COLUMNS = (
    ('auc', 'AUC', '{:6.3f}'),
    ('ao', 'AO', '{:6.3f}'),
    ('op50', 'OP50', '{:6.3f}'),
    ('op75', 'OP75', '{:6.3f}'),
    ('precision_20', 'Prec@20', '{:7.3f}'),
    ('norm_precision', 'NormPrec', '{:8.3f}'),
    ('fps', 'FPS', '{:7.1f}'),
)


def _cell(value: Optional[float], form: str, width: int) -> str:
    return f'{"-":>{width}}' if value is None else form.format(value)


def tracker_table(summaries: Mapping[str, Mapping[str, Any]]) -> str:
    """One row per tracker: AUC, AO, OP50, OP75, Prec@20, NormPrec, FPS, evaluated frames."""
    width = max([len('tracker')] + [len(name) for name in summaries])
    header = f'{"tracker":<{width}} ' + ' '.join(
        f'{title:>{len(form.format(0))}}' for _, title, form in COLUMNS) + f' {"frames":>7}'
    rows = [header]
    for name, summary in summaries.items():
        cells = [_cell(summary[key], form, len(form.format(0))) for key, _, form in COLUMNS]
        rows.append(f'{name:<{width}} ' + ' '.join(cells) + f' {summary["frames"]:>7d}')
    return '\n'.join(rows)


def attribute_table(summaries: Mapping[str, Mapping[str, Any]]) -> str:
    """Success AUC per challenge class (rows) and tracker (columns), with the frame count.

    Empty string when no tracker has per-frame labels.
    """
    present = [name for name in CHALLENGE_NAMES
               if any(name in s['attributes'] for s in summaries.values())]
    if not present:
        return ''
    widths = [max(8, len(name)) for name in summaries]
    header = f'{"attribute (AUC)":<24} {"frames":>7} ' + ' '.join(
        f'{name:>{w}}' for name, w in zip(summaries, widths))
    rows = [header]
    for attribute in present:
        frames = max(s['attributes'].get(attribute, {}).get('frames', 0)
                     for s in summaries.values())
        cells = [_cell(s['attributes'].get(attribute, {}).get('auc'), f'{{:{w}.3f}}', w)
                 for s, w in zip(summaries.values(), widths)]
        rows.append(f'{attribute:<24} {frames:>7d} ' + ' '.join(cells))
    return '\n'.join(rows)


def classifier_section(name: str, metrics: Mapping[str, Any]) -> str:
    """Format the classifier table of one tracker (per-class F1, always-``normal`` baseline)."""
    return (f'challenge classifier of {name} ({metrics["head"]} head; "base" = always '
            f'"normal"):\n' + classification_report(metrics))


def write_json(payload: Mapping[str, Any], path: PathLike) -> Path:
    """Write ``payload`` as indented JSON (NaN refused: undefined values are null)."""
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    temp = out.with_name(f'.{out.name}.{os.getpid()}.tmp')
    temp.write_text(json.dumps(payload, indent=1, allow_nan=False) + '\n', encoding='utf-8')
    os.replace(temp, out)
    return out


def console_report(summaries: Mapping[str, Mapping[str, Any]]) -> str:
    """Every table: trackers, per-attribute AUC, then each classifier's metrics."""
    parts = [tracker_table(summaries), attribute_table(summaries)]
    parts += [classifier_section(name, s['classification'])
              for name, s in summaries.items() if s.get('classification')]
    return '\n\n'.join(part for part in parts if part)
