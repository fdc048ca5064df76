"""The model a run starts from, through the project's checkpoint loaders.

``--pretrained_weights`` may name the official SimTrack release (box part), an OpenAI CLIP
checkpoint (image tower only), or one of our checkpoints (a training checkpoint included); no
file means random initialisation, meant for small configurations. The model's class order is
always :data:`~simtrack_ros.challenges.CHALLENGE_NAMES` (the order of the dataset's labels): a
checkpoint stored in another order is reordered by name, one with other classes is refused.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Dict, List, Mapping, Optional, Tuple

from simtrack_ros.challenges import CHALLENGE_NAMES, reorder_index
from simtrack_ros.model.checkpoint import (CheckpointError, FORMAT_NAME, load_checkpoint,
                                           read_checkpoint)
from simtrack_ros.model.config import get_config, SimTrackConfig
from simtrack_ros.model.simtrack import build_model, SimTrack
from simtrack_ros.training.settings import TrainSettings

DEFAULT_CONFIG = 'simtrack-b16'
#: Configs above this width are not meant to be trained from random weights on a CPU budget.
RANDOM_INIT_MAX_WIDTH = 384


def parse_model_options(options: Tuple[str, ...]) -> Dict[str, Any]:
    """Parse ``KEY=VALUE`` strings into typed model-config overrides (ValueError if bad)."""
    fields = {f.name: f for f in dataclasses.fields(SimTrackConfig)}
    overrides: Dict[str, Any] = {}
    for option in options:
        key, sep, text = option.partition('=')
        if not sep or key not in fields or key in ('name', 'class_names'):
            raise ValueError(f'--model_option {option!r}: expected KEY=VALUE with KEY one of '
                             f'{", ".join(k for k in fields if k not in ("name", "class_names"))}')
        default = fields[key].default
        try:
            if isinstance(default, bool):
                if text.lower() not in ('true', 'false', '1', '0'):
                    raise ValueError(text)
                overrides[key] = text.lower() in ('true', '1')
            else:
                overrides[key] = type(default)(text)
        except ValueError:
            raise ValueError(f'--model_option {option!r}: {text!r} is not a '
                             f'{type(default).__name__}') from None
    return overrides


def _stored_config(path: str) -> Optional[SimTrackConfig]:
    """Return the model config stored in our checkpoint at ``path`` (None for other formats).

    A file this cannot read (CLIP's TorchScript archive, a broken file) gives None too: the
    loader then reads it or says what is wrong with it.
    """
    try:
        obj, _ = read_checkpoint(path)
    except CheckpointError:
        return None
    if not (isinstance(obj, Mapping) and obj.get('format') == FORMAT_NAME):
        return None
    try:
        return SimTrackConfig.from_dict(dict(obj['config']))
    except (KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(f'{path}: malformed model config [{exc}]') from None


def model_config(settings: TrainSettings, stored: Optional[SimTrackConfig] = None,
                 source: str = '') -> SimTrackConfig:
    """Return the config to train: ``--config`` (else the checkpoint's, else B/16), changed."""
    changes = parse_model_options(settings.model_options)
    for name in ('multi_label', 'fusion'):
        if getattr(settings, name) is not None:
            changes[name] = getattr(settings, name)
    if settings.config is None and stored is not None:
        base = stored
    else:
        base = get_config(settings.config or DEFAULT_CONFIG)
    if list(base.class_names) != list(CHALLENGE_NAMES):
        try:
            reorder_index(base.class_names, CHALLENGE_NAMES)
        except ValueError as exc:  # names what is missing and what is extra
            raise CheckpointError(f'{source}: class list does not match the dataset labels: '
                                  f'{exc}') from None
        changes['class_names'] = CHALLENGE_NAMES
    return base.replace(**changes) if changes else base


def start_model(settings: TrainSettings) -> Tuple[SimTrack, List[str]]:
    """Build the model of ``settings`` and load its starting weights; return it and notes."""
    path = settings.pretrained_weights
    if path is None:
        config = model_config(settings)
        notes = ['random initialisation (no --pretrained_weights)']
        if config.width > RANDOM_INIT_MAX_WIDTH:
            notes.append(f'{config.name} (width {config.width}) from random weights needs far '
                         'more data and time than a fine-tune: start from the official weights')
        model = build_model(config)
        model.trained_heads = set()
        return model.train(), notes
    config = model_config(settings, _stored_config(path), path)
    model, report = load_checkpoint(path, config=config)
    return model.train(), report.summary().splitlines()
