"""Turn the node's ``weights`` / ``model_config`` parameters into a model (or a clear error).

A ``.pth`` file is a checkpoint (a PyTorch model); a ``.onnx`` file an exported model
(:func:`simtrack_ros.export.onnx_export.load_exported`: its template graph beside it, checked;
an unusable file is an ``ExportError`` naming it).
"""
from __future__ import annotations

from dataclasses import dataclass, field
import os
from pathlib import Path
from typing import List, Optional, TYPE_CHECKING, Union

from torch import nn

from simtrack_ros.export.weights_file import is_exported
from simtrack_ros.model import build_model, CheckpointError, get_config, load_checkpoint
from simtrack_ros.model.config import SimTrackConfig

if TYPE_CHECKING:
    from simtrack_ros.export.onnx_export import ExportedModel

PACKAGE = 'simtrack_ros'
#: The package's demo weights, relative to its share directory (and to the source tree's
#: ``simtrack_ros/`` folder): the 'small' model trained on synthetic sea scenes
#: (docs/demo-model.md).
DEMO_WEIGHTS = Path('weights') / 'demo_small.pth'
#: Configuration of the random-weights model (``weights: ''`` without demo weights).
DEMO_CONFIG = 'tiny'
#: The source tree's package folder (``simtrack_ros/``), where a checkout keeps the weights.
_SOURCE_PACKAGE = Path(__file__).resolve().parents[2]


@dataclass
class LoadedModel:
    """A model ready for the tracker, and what to tell the user about it."""

    model: Union[nn.Module, 'ExportedModel']
    description: str
    #: False for random weights and backbone-only weights (e.g. CLIP): boxes mean nothing.
    box_trained: bool
    warnings: List[str] = field(default_factory=list)
    notes: List[str] = field(default_factory=list)
    #: The weights file (a checkpoint is the key of the export cache); None for random weights.
    path: Optional[Path] = None


def _share_directory() -> Optional[Path]:
    try:
        from ament_index_python.packages import get_package_share_directory
        return Path(get_package_share_directory(PACKAGE))
    except (ImportError, LookupError, ValueError):
        return None


def demo_weights_candidates() -> List[Path]:
    """Where the demo weights are looked for: the package share directory, the source tree."""
    share = _share_directory()
    return ([share / DEMO_WEIGHTS] if share is not None else []) + [
        _SOURCE_PACKAGE / DEMO_WEIGHTS]


def find_demo_weights() -> Optional[Path]:
    """Return the package's demo weights file, or None when it is not installed."""
    return next((path for path in demo_weights_candidates() if path.is_file()), None)


def resolve_weights(weights: str) -> Path:
    """Find the checkpoint file; CheckpointError if it does not exist.

    ``~`` is expanded; a relative path is tried in the working directory, then in the package
    share directory (on a ROS install).
    """
    path = Path(os.path.expanduser(weights))
    candidates = [path]
    share = _share_directory()
    if not path.is_absolute() and share is not None:
        candidates.append(share / path)
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    tried = ', '.join(str(c) for c in candidates)
    raise CheckpointError(f'weights file {weights!r} not found (tried {tried})')


def _random_model(config_name: str, why: str) -> LoadedModel:
    """Build the random-weights model of ``config_name``, with a loud warning saying ``why``."""
    model = build_model(config_name).eval()
    warning = (f"weights is '' and {why}: running the DEMO model ({config_name} config, RANDOM "
               'weights). Its boxes and classes are MEANINGLESS; set the weights parameter to '
               'a SimTrack checkpoint for real tracking.')
    return LoadedModel(model, f'demo model ({config_name}, random weights)', box_trained=False,
                       warnings=[warning])


def load_model(weights: str, model_config: str) -> LoadedModel:
    """Build or load the model; CheckpointError (a ValueError) with the reason on failure.

    ``weights`` '' loads the package's demo weights (:func:`find_demo_weights`) when
    ``model_config`` is 'auto'; with another ``model_config``, or when the package holds no
    demo weights, it builds a model with random weights (``tiny`` for 'auto') and warns.
    """
    config = None if model_config == 'auto' else get_config(model_config)
    demo = None
    if not weights:
        if config is not None:
            return _random_model(config.name, f'model_config is {config.name!r}, not auto')
        demo = find_demo_weights()
        if demo is None:
            tried = ', '.join(str(p) for p in demo_weights_candidates())
            return _random_model(DEMO_CONFIG, f'the package has no demo weights (tried {tried})')
    path = demo or resolve_weights(weights)
    if is_exported(path):
        return _load_exported(path, config)
    model, report = load_checkpoint(path, config)
    box_trained = 'box' in model.trained_heads
    name = model.config.name
    loaded = LoadedModel(model, f'demo weights {path} ({name})' if demo else f'{name} from {path}',
                         box_trained, notes=[report.summary()], path=path)
    if demo:
        loaded.notes.insert(0, (
            f"weights is '': running the package's demo weights {path} ({name} config, "
            'trained on synthetic sea scenes: for demos; real use needs the official SimTrack '
            'weights or a checkpoint fine-tuned on real footage)'))
    problems = report.problems()
    if problems:
        loaded.warnings.append(f'checkpoint {path}: ' + '; '.join(problems))
    _warn_untrained(loaded, f'checkpoint {path}')
    _note_calibration(loaded)
    return loaded


def _note_calibration(loaded: LoadedModel) -> None:
    calibration = getattr(loaded.model, 'challenge_calibration', None)
    if calibration is not None:
        loaded.notes.append(
            "challenge probabilities: the head calibrated with the tracker's measured cues "
            f'({", ".join(calibration.cue_names)}; fitted by simtrack-calibrate)')


def _warn_untrained(loaded: LoadedModel, what: str) -> None:
    if not loaded.box_trained:
        loaded.warnings.append(
            f'{what} has no trained box head (backbone-only weights such as CLIP): the boxes '
            'and confidences are MEANINGLESS until the tracker is trained')


def _load_exported(path: Path, config: Optional[SimTrackConfig]) -> LoadedModel:
    """Open an exported model; ExportError (a ValueError) when unusable or of another config."""
    from simtrack_ros.export.onnx_export import load_exported
    exported = load_exported(path)
    name = exported.config.name
    if config is not None and config.name != name:
        raise CheckpointError(f'exported model {path} holds a {name!r} model, but model_config '
                              f"is {config.name!r}; use model_config 'auto' for an .onnx file")
    loaded = LoadedModel(exported, f'{name} exported to {path} ({exported.precision})',
                         'box' in exported.trained_heads, path=path,
                         notes=[f'exported model {path}: {name}, {exported.precision}, heads '
                                f'{", ".join(exported.metadata.trained_heads) or "none"} '
                                f'trained, template graph {exported.template.name}'])
    _warn_untrained(loaded, f'exported model {path}')
    _note_calibration(loaded)
    return loaded
