"""The tracking-challenge classification stream, a base class of :class:`SimTrack`.

From the real CLS token (index tz² of the backbone output, after the bottleneck):
``cls_projection`` → ReLU → dropout → ``classifier`` gives one logit per challenge class.
With ``config.fusion`` on, ``fusion_layer`` maps the same hidden features back to the
bottleneck width and adds them to every search feature before the corner head. It is
zero-initialised, so switching fusion on leaves the boxes of a tracking-only checkpoint
unchanged until it is trained.

The layers are direct children of the model, so their state-dict keys are ``cls_projection.*``,
``classifier.*`` and ``fusion_layer.*`` (the design guide's names).
"""
from __future__ import annotations

from typing import NamedTuple, Optional

import torch
from torch import nn
import torch.nn.functional as F

from simtrack_ros.model.config import SimTrackConfig

#: State-dict prefixes of the classification stream.
CLASS_STREAM_PREFIXES = ('cls_projection.', 'classifier.', 'fusion_layer.')


def zero_linear(in_features: int, out_features: int) -> nn.Linear:
    """Return a Linear layer with zero weight and bias (starts as the zero map)."""
    layer = nn.Linear(in_features, out_features)
    nn.init.zeros_(layer.weight)
    nn.init.zeros_(layer.bias)
    return layer


def class_probabilities(cls_logits: torch.Tensor, multi_label: bool) -> torch.Tensor:
    """Class probabilities (B×N, fp32): softmax, or per-class sigmoid when multi-label."""
    logits = cls_logits.float()
    return torch.sigmoid(logits) if multi_label else torch.softmax(logits, dim=-1)


class ClassStreamOutput(NamedTuple):
    """Hidden features (B×cls_hidden_dim), logits (B×N) and the fusion term (B×hidden_dim)."""

    features: torch.Tensor
    logits: Optional[torch.Tensor]
    fusion: Optional[torch.Tensor]


class ChallengeStream(nn.Module):
    """Base class of a model that owns the classification stream as direct children.

    Call :meth:`build_class_stream` from ``__init__`` after ``nn.Module.__init__``.
    """

    config: SimTrackConfig
    cls_projection: nn.Linear
    cls_dropout: nn.Dropout
    classifier: nn.Linear
    fusion_layer: Optional[nn.Linear]

    def build_class_stream(self, config: SimTrackConfig) -> None:
        """Create the stream's layers; ``fusion_layer`` only with ``config.fusion``."""
        self.cls_projection = nn.Linear(config.hidden_dim, config.cls_hidden_dim)
        self.cls_dropout = nn.Dropout(config.cls_dropout)
        self.classifier = nn.Linear(config.cls_hidden_dim, config.num_classes)
        self.fusion_layer = (
            zero_linear(config.cls_hidden_dim, config.hidden_dim) if config.fusion else None)

    def run_class_stream(self, cls_token: torch.Tensor, with_logits: bool = True
                         ) -> ClassStreamOutput:
        """Run the stream on the bottlenecked CLS token (B×hidden_dim)."""
        features = self.cls_dropout(F.relu(self.cls_projection(cls_token)))
        logits = self.classifier(features) if with_logits else None
        fusion = self.fusion_layer(features) if self.fusion_layer is not None else None
        return ClassStreamOutput(features, logits, fusion)

    def class_probabilities(self, cls_logits: torch.Tensor) -> torch.Tensor:
        """Class probabilities of this model's head (see :func:`class_probabilities`)."""
        return class_probabilities(cls_logits, self.config.multi_label)
