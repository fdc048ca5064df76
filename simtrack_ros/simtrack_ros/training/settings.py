"""Every setting of a fine-tuning run, the presets, and how they combine.

A run's settings are :class:`TrainSettings` (plain data, stored in every training checkpoint).
They are resolved in layers, later ones winning: the defaults below, then a preset
(:data:`PRESETS`), then the flags given explicitly on the command line. A resumed run starts
from the settings stored in its checkpoint instead of the defaults and preset.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Dict, Mapping, Optional, Tuple

#: What a run trains: the class head only, box and class heads together, or the box head only.
TASKS = ('cls', 'joint', 'box')
SCHEDULES = ('constant', 'step', 'cosine')
PRECISIONS = ('auto', 'fp32', 'bf16', 'fp16')
#: How the softmax head meets class imbalance: weighted CE, a weighted sampler, or neither.
BALANCES = ('weights', 'sampler', 'none')


@dataclass(frozen=True)
class TrainSettings:
    """One fine-tuning run (field comments are the ``--help`` texts' short forms)."""

    data_dir: str = ''
    out: str = 'runs/finetune'
    preset: Optional[str] = None
    task: str = 'cls'                       # TASKS
    # model and starting point
    config: Optional[str] = None            # model config name; None: the checkpoint's, or B/16
    model_options: Tuple[str, ...] = ()     # KEY=VALUE overrides of the model config
    pretrained_weights: Optional[str] = None
    multi_label: Optional[bool] = None      # None: the checkpoint's, or single-label
    fusion: Optional[bool] = None           # None: the checkpoint's, or off
    # optimisation
    epochs: int = 50
    batch_size: int = 8                     # per process
    lr: float = 1e-4
    backbone_lr_mult: float = 0.1           # CLIP visual (not pos_fc) LR = lr * this
    weight_decay: float = 1e-4
    schedule: str = 'constant'              # SCHEDULES
    lr_drop_epochs: Tuple[int, ...] = (40,)
    lr_gamma: float = 0.1
    warmup_steps: int = 0
    min_lr_ratio: float = 0.0               # cosine floor, as a share of the LR
    grad_clip: float = 0.0                  # max gradient norm; 0 = off
    accum_steps: int = 1
    freeze_backbone: bool = False
    stage2_epoch: Optional[int] = None      # two-stage: unfreeze from this epoch on
    stage2_lr: float = 1e-5
    precision: str = 'auto'                 # PRECISIONS
    device: str = 'auto'
    # losses
    balance: str = 'weights'                # BALANCES
    lambda_cls: float = 1.0
    giou_weight: float = 2.0
    l1_weight: float = 5.0
    # data
    val_split: float = 0.2
    max_samples_per_seq: int = 500
    samples_per_epoch: int = 6000           # tracking pairs per epoch (joint, box)
    val_samples: int = 1000                 # tracking pairs drawn once for validation
    max_gap: int = 200
    augment: bool = True
    num_workers: int = 2
    seed: int = 0
    deterministic: bool = False
    tensorboard: bool = True

    @property
    def trains_box(self) -> bool:
        """Whether the box head is trained (joint or box task)."""
        return self.task in ('joint', 'box')

    @property
    def trains_cls(self) -> bool:
        """Whether the class head is trained (cls or joint task)."""
        return self.task in ('cls', 'joint')

    def to_dict(self) -> Dict[str, Any]:
        """Plain data (lists for tuples), as stored in checkpoints."""
        return {k: list(v) if isinstance(v, tuple) else v
                for k, v in dataclasses.asdict(self).items()}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> 'TrainSettings':
        """Inverse of :meth:`to_dict`; unknown keys are a ValueError."""
        known = {f.name: f for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - set(known))
        if unknown:
            raise ValueError(f'unknown training settings {unknown}')
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in data.items()})

    def replace(self, **changes: Any) -> 'TrainSettings':
        """Return a copy with some fields changed."""
        return dataclasses.replace(self, **changes)


#: Named recipes; explicit flags override their values.
PRESETS: Dict[str, Dict[str, Any]] = {
    # The design guide's classification fine-tune ("Basic training", frozen backbone).
    'guide': {'task': 'cls', 'freeze_backbone': True, 'epochs': 50, 'batch_size': 8,
              'lr': 1e-4, 'weight_decay': 1e-4, 'schedule': 'constant', 'warmup_steps': 0,
              'grad_clip': 0.0, 'val_split': 0.2, 'max_samples_per_seq': 500,
              'balance': 'weights'},
    # The MVTD paper's SimTrack recipe (the official one on 6,000 samples per epoch).
    'mvtd': {'task': 'joint', 'freeze_backbone': False, 'epochs': 50,
             'samples_per_epoch': 6000, 'batch_size': 64, 'lr': 1e-4, 'backbone_lr_mult': 0.1,
             'weight_decay': 1e-4, 'schedule': 'step', 'lr_drop_epochs': (40,),
             'lr_gamma': 0.1, 'warmup_steps': 0, 'grad_clip': 0.1},
    # Small configurations from random weights (reference/training-from-scratch.md).
    'scratch': {'task': 'box', 'config': 'tiny', 'pretrained_weights': None, 'epochs': 15,
                'samples_per_epoch': 1600, 'batch_size': 16, 'lr': 3e-4,
                'backbone_lr_mult': 1.0, 'weight_decay': 1e-4, 'schedule': 'constant',
                'warmup_steps': 50, 'grad_clip': 1.0},
}


def resolve(explicit: Mapping[str, Any], base: Optional[TrainSettings] = None
            ) -> TrainSettings:
    """Return ``base`` (default: the defaults) changed by the preset named, then ``explicit``."""
    settings = base or TrainSettings()
    preset = explicit.get('preset')
    if preset is not None:
        if preset not in PRESETS:
            raise ValueError(f'unknown preset {preset!r}; choose one of {", ".join(PRESETS)}')
        settings = settings.replace(**PRESETS[preset])
    return settings.replace(**explicit)


def check(settings: TrainSettings) -> None:
    """Raise ValueError naming the first inconsistent setting."""
    choices = (('task', TASKS), ('schedule', SCHEDULES), ('precision', PRECISIONS),
               ('balance', BALANCES))
    for name, allowed in choices:
        if getattr(settings, name) not in allowed:
            raise ValueError(f'--{name} must be one of {", ".join(allowed)}')
    positive = ('epochs', 'batch_size', 'accum_steps', 'samples_per_epoch', 'max_samples_per_seq')
    for name in positive:
        if getattr(settings, name) < 1:
            raise ValueError(f'--{name} must be at least 1')
    if not 0.0 <= settings.val_split < 1.0:
        raise ValueError('--val_split must be in [0, 1)')
    if settings.lr <= 0 or settings.stage2_lr <= 0:
        raise ValueError('--lr and --stage2_lr must be positive')
    if settings.stage2_epoch is not None and not 0 < settings.stage2_epoch < settings.epochs:
        raise ValueError('--stage2_epoch must be after the first epoch and before --epochs')
    if settings.balance == 'sampler' and settings.task != 'cls':
        raise ValueError('--balance sampler needs --task cls (tracking pairs are drawn at random)')
