"""Training checkpoints: ``last.pth`` and ``best.pth`` in the project's own format.

A training checkpoint is what :func:`simtrack_ros.model.checkpoint.save_checkpoint` writes
(model config, class names, single/multi-label, trained heads, weights), so the node, the
evaluation and the export load it as it is, plus a ``'training'`` entry::

    {'epoch': completed epochs, 'step': optimizer steps, 'settings': TrainSettings.to_dict(),
     'split': {'train': [sequence names], 'val': [...]}, 'optimizer': state_dict,
     'scaler': GradScaler state_dict, 'scheduler': LrSchedule fields, 'rng': rng_state(),
     'best': {'metric': name, 'value': float | None, 'epoch': int | None}, 'metrics': {...}}

Everything in it is plain data or tensors: ``torch.load(weights_only=True)`` reads it.
Files are written atomically (temporary sibling, fsync, rename), so a crash while saving leaves
the previous file whole.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
import json
import math
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional

import numpy as np

from simtrack_ros.model.checkpoint import (CheckpointError, FORMAT_NAME, PathLike,
                                           read_checkpoint, save_checkpoint)
from simtrack_ros.model.simtrack import SimTrack

LAST = 'last.pth'
BEST = 'best.pth'


def plain(value: Any) -> Any:
    """``value`` with numpy scalars/arrays and tuples turned into plain python data."""
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    return value


@dataclass
class Best:
    """The best validation value so far (higher is better)."""

    metric: str
    value: Optional[float] = None
    epoch: Optional[int] = None

    def improves(self, value: Optional[float]) -> bool:
        """Whether ``value`` beats the best so far (None and NaN never do)."""
        if value is None or math.isnan(value):
            return False
        return self.value is None or value > self.value


@dataclass
class TrainingState:
    """Where a run is: what a resume needs besides the model weights."""

    epoch: int = 0                      # completed epochs
    step: int = 0                       # optimizer steps taken
    split: Dict[str, List[str]] = field(default_factory=dict)
    best: Best = field(default_factory=lambda: Best('macro_f1'))


def save_training_checkpoint(path: PathLike, model: SimTrack, state: TrainingState,
                             payload: Mapping[str, Any],
                             metrics: Optional[Mapping[str, Any]] = None) -> Path:
    """Write ``model`` with a ``'training'`` entry of ``state`` and ``payload`` (atomically).

    ``payload`` holds the run's states (``settings``, ``optimizer``, ``scaler``,
    ``scheduler``, ``rng``); ``metrics`` are the epoch's.
    """
    metrics = plain(metrics or {})
    training = {'epoch': state.epoch, 'step': state.step, 'split': plain(state.split),
                'best': dataclasses.asdict(state.best), 'metrics': metrics, **payload}
    metadata = {'created_by': 'simtrack-finetune', 'epoch': state.epoch, 'step': state.step,
                'best': dataclasses.asdict(state.best),
                'task': payload.get('settings', {}).get('task')}
    json.dumps(metadata)  # plain data only: fail before writing anything
    return save_checkpoint(model, path, metadata=metadata, training=training)


def read_training_entry(path: PathLike) -> Dict[str, Any]:
    """Return the ``'training'`` entry of a training checkpoint (CheckpointError otherwise)."""
    obj, _ = read_checkpoint(path)
    if not isinstance(obj, Mapping) or obj.get('format') != FORMAT_NAME:
        raise CheckpointError(f'{path}: not a simtrack_ros checkpoint; to start from it use '
                              '--pretrained_weights, not --resume')
    training = obj.get('training')
    if not isinstance(training, Mapping) or 'settings' not in training:
        raise CheckpointError(f'{path}: a model checkpoint without training state (written by '
                              'save_checkpoint, not simtrack-finetune): use --pretrained_weights')
    return dict(training)


def training_state(entry: Mapping[str, Any]) -> TrainingState:
    """Return the :class:`TrainingState` stored in a ``'training'`` entry."""
    return TrainingState(epoch=int(entry['epoch']), step=int(entry['step']),
                         split={k: list(v) for k, v in entry['split'].items()},
                         best=Best(**entry['best']))


def remove_stale_temps(folder: PathLike) -> List[Path]:
    """Delete temporary files that a run killed mid-save left next to its checkpoints."""
    removed = []
    for name in (LAST, BEST):
        for temp in Path(folder).glob(f'.{name}.*.tmp'):
            temp.unlink(missing_ok=True)
            removed.append(temp)
    return removed
