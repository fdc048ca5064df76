"""What changes during a run: parameter groups, the learning-rate schedule, frozen parts.

* :func:`param_groups`: the official three AdamW groups: the heads and neck (everything outside
  ``backbone.``) and ``backbone.pos_fc`` at the LR, the CLIP visual at LR x backbone multiplier.
  Every parameter is in a group even while frozen (AdamW skips parameters without a gradient),
  so the optimizer state keeps one shape through a two-stage run and across a resume.
* :class:`LrSchedule`: warm-up, then constant, step or cosine decay, per optimizer step; the
  second stage of the guide's two-stage schedule restarts from ``stage2_lr``. A pure function of
  the step, so a resumed run needs only the step count.
* :func:`set_trainable`: which parameters train in an epoch (task, frozen backbone, stage).
"""
from __future__ import annotations

from dataclasses import dataclass
import math
from typing import Any, Dict, List, Tuple

import torch
from torch import nn

from simtrack_ros.model.challenge_head import CLASS_STREAM_PREFIXES
from simtrack_ros.model.simtrack import SimTrack
from simtrack_ros.training.settings import TrainSettings

#: Parameters trained at the full LR although they sit in the backbone (official recipe).
POS_FC_PREFIX = 'backbone.pos_fc.'
BACKBONE_PREFIX = 'backbone.'
#: What freeze_backbone freezes (SimTrack.freeze_backbone: the backbone and the bottleneck).
FROZEN_WITH_BACKBONE = ('backbone.', 'bottleneck.')
#: Kept for the checkpoint layout but never used by the tracker (CLIP's projection).
NEVER_USED = ('backbone.visual.proj',)


def param_groups(model: nn.Module, backbone_lr_mult: float) -> List[Dict[str, Any]]:
    """Return AdamW groups ``heads``, ``pos_fc``, ``backbone``, each with an ``lr_scale``."""
    names: Dict[str, List[nn.Parameter]] = {'heads': [], 'pos_fc': [], 'backbone': []}
    for name, param in model.named_parameters():
        if name.startswith(POS_FC_PREFIX):
            names['pos_fc'].append(param)
        elif name.startswith(BACKBONE_PREFIX):
            names['backbone'].append(param)
        else:
            names['heads'].append(param)
    scales = {'heads': 1.0, 'pos_fc': 1.0, 'backbone': backbone_lr_mult}
    return [{'params': params, 'name': name, 'lr_scale': scales[name]}
            for name, params in names.items() if params]


def build_optimizer(model: nn.Module, settings: TrainSettings) -> torch.optim.AdamW:
    """Return AdamW over :func:`param_groups` (:class:`LrSchedule` sets the LR each step)."""
    return torch.optim.AdamW(param_groups(model, settings.backbone_lr_mult), lr=settings.lr,
                             weight_decay=settings.weight_decay)


@dataclass(frozen=True)
class LrSchedule:
    """The head LR at each optimizer step (groups get it times their ``lr_scale``)."""

    lr: float
    steps_per_epoch: int
    epochs: int
    kind: str = 'constant'
    warmup_steps: int = 0
    drop_epochs: Tuple[int, ...] = ()
    gamma: float = 0.1
    min_lr_ratio: float = 0.0
    stage2_epoch: int = 0       # 0: a single stage
    stage2_lr: float = 0.0

    @classmethod
    def from_settings(cls, settings: TrainSettings, steps_per_epoch: int) -> 'LrSchedule':
        """Return the schedule of ``settings`` at ``steps_per_epoch`` optimizer steps an epoch."""
        return cls(lr=settings.lr, steps_per_epoch=steps_per_epoch, epochs=settings.epochs,
                   kind=settings.schedule, warmup_steps=settings.warmup_steps,
                   drop_epochs=tuple(settings.lr_drop_epochs), gamma=settings.lr_gamma,
                   min_lr_ratio=settings.min_lr_ratio, stage2_epoch=settings.stage2_epoch or 0,
                   stage2_lr=settings.stage2_lr)

    def _decay(self, step: int, start: int, end: int) -> float:
        if self.kind == 'step':
            epoch = step // self.steps_per_epoch
            return self.gamma ** sum(1 for drop in self.drop_epochs if epoch >= drop)
        if self.kind == 'cosine':
            progress = min(max(step - start, 0) / max(end - start, 1), 1.0)
            cosine = 0.5 * (1.0 + math.cos(math.pi * progress))
            return self.min_lr_ratio + (1.0 - self.min_lr_ratio) * cosine
        return 1.0

    def lr_at(self, step: int) -> float:
        """Head LR at optimizer step ``step`` (0-based)."""
        total = self.steps_per_epoch * self.epochs
        stage2 = self.stage2_epoch * self.steps_per_epoch
        if self.stage2_epoch and step >= stage2:
            return self.stage2_lr * self._decay(step, stage2, total)
        warmup = min(1.0, (step + 1) / self.warmup_steps) if self.warmup_steps else 1.0
        start = self.warmup_steps
        end = stage2 if self.stage2_epoch else total
        return self.lr * warmup * self._decay(step, start, end)

    def apply(self, optimizer: torch.optim.Optimizer, step: int) -> float:
        """Set every group's LR for ``step``; return the head LR."""
        lr = self.lr_at(step)
        for group in optimizer.param_groups:
            group['lr'] = lr * group.get('lr_scale', 1.0)
        return lr


def backbone_frozen(settings: TrainSettings, epoch: int) -> bool:
    """Whether the backbone is frozen in ``epoch`` (``--freeze_backbone`` or two-stage stage 1)."""
    if settings.stage2_epoch is not None:
        return epoch < settings.stage2_epoch
    return settings.freeze_backbone


def unused_prefixes(model: SimTrack, settings: TrainSettings) -> Tuple[str, ...]:
    """Parameters the task never gets gradients for (frozen, so DDP expects none)."""
    if settings.task == 'cls':
        unused = ('box_head.',) + (('fusion_layer.',) if model.fusion_layer is not None else ())
    elif settings.task == 'box':
        unused = ('classifier.',) if model.fusion_layer is not None else CLASS_STREAM_PREFIXES
    else:
        unused = ()
    return NEVER_USED + unused


def set_trainable(model: SimTrack, settings: TrainSettings, epoch: int) -> List[str]:
    """Set ``requires_grad`` for ``epoch``; return the names of the trainable parameters."""
    frozen = unused_prefixes(model, settings)
    if backbone_frozen(settings, epoch):
        frozen += FROZEN_WITH_BACKBONE
    trainable = []
    for name, param in model.named_parameters():
        param.requires_grad_(not name.startswith(frozen))
        if param.requires_grad:
            trainable.append(name)
    return trainable
