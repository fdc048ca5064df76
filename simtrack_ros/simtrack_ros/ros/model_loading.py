"""Turn the node's ``weights`` / ``model_config`` parameters into a model (or a clear error)."""
from __future__ import annotations

from dataclasses import dataclass, field
import os
from pathlib import Path
from typing import List

from torch import nn

from simtrack_ros.model import build_model, CheckpointError, get_config, load_checkpoint

PACKAGE = 'simtrack_ros'
#: Configuration of the demo model (``weights: ''``).
DEMO_CONFIG = 'tiny'
DEMO_WARNING = ("weights is '' : running the DEMO model (tiny config, RANDOM weights). Its "
                'boxes and classes are MEANINGLESS; set the weights parameter to a SimTrack '
                'checkpoint for real tracking.')


@dataclass
class LoadedModel:
    """A model ready for the tracker, and what to tell the user about it."""

    model: nn.Module
    description: str
    #: False for the demo model and backbone-only weights (e.g. CLIP): boxes mean nothing.
    box_trained: bool
    warnings: List[str] = field(default_factory=list)
    notes: List[str] = field(default_factory=list)


def resolve_weights(weights: str) -> Path:
    """Find the checkpoint file; CheckpointError if it does not exist.

    ``~`` is expanded; a relative path is tried in the working directory, then in the package
    share directory (on a ROS install).
    """
    path = Path(os.path.expanduser(weights))
    candidates = [path]
    if not path.is_absolute():
        try:
            from ament_index_python.packages import get_package_share_directory
            candidates.append(Path(get_package_share_directory(PACKAGE)) / path)
        except (ImportError, LookupError, ValueError):
            pass
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    tried = ', '.join(str(c) for c in candidates)
    raise CheckpointError(f'weights file {weights!r} not found (tried {tried})')


def load_model(weights: str, model_config: str) -> LoadedModel:
    """Build or load the model; CheckpointError (a ValueError) with the reason on failure."""
    config = None if model_config == 'auto' else get_config(model_config)
    if not weights:
        model = build_model(config or DEMO_CONFIG).eval()
        return LoadedModel(model, f'demo model ({model.config.name}, random weights)',
                           box_trained=False, warnings=[DEMO_WARNING])
    path = resolve_weights(weights)
    model, report = load_checkpoint(path, config)
    box_trained = 'box' in model.trained_heads
    loaded = LoadedModel(model, f'{model.config.name} from {path}', box_trained,
                         notes=[report.summary()])
    problems = report.problems()
    if problems:
        loaded.warnings.append(f'checkpoint {path}: ' + '; '.join(problems))
    if not box_trained:
        loaded.warnings.append(
            f'checkpoint {path} has no trained box head (backbone-only weights such as CLIP): '
            'the boxes and confidences are MEANINGLESS until the tracker is trained')
    return loaded
