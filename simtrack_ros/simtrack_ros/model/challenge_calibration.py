"""Challenge probabilities from the head's logits and the tracker's measured cues.

A multi-label head sees one search crop; the cues of
:mod:`simtrack_ros.tracking.challenge_cues` carry what the crop cannot show (the target's size
and its change since the first frame, its motion, the image border). :class:`ChallengeCalibration`
is one logistic regression per class over both: the inputs ``[logits, cues]`` are standardised
(``(x - mean) / scale``), then ``p = sigmoid(weight @ x + bias)``. It is fitted on sequences the
head was not trained on (``simtrack-calibrate``) and stored in the checkpoint beside the model
(key ``challenge_calibration``) and in exported files' metadata. A class with too few labelled
examples of either kind in the fitting data keeps the head's own probability (its row passes
its logit through unchanged) rather than a fit that would switch it off.
"""
from __future__ import annotations

from dataclasses import dataclass
import math
from typing import Any, Dict, List, Mapping, Sequence, Tuple

import numpy as np
import torch

#: Default L2 penalty of :func:`fitted_by_logistic_regression` (``simtrack-calibrate --l2``).
DEFAULT_L2 = 1e-5
#: Fewest judged frames with and without a class that its fit needs (:func:`head_only_classes`).
MIN_EXAMPLES = 10


@dataclass(frozen=True)
class ChallengeCalibration:
    """Per-class logistic regression over the head's logits and the measured cues.

    Attributes:
        class_names: the C classes, in the head's output order.
        cue_names: the F cues, in :func:`~simtrack_ros.tracking.challenge_cues.measure_cues`
            order.
        mean, scale: C + F standardisation values of ``[logits, cues]``.
        weight: C x (C + F) coefficients; ``bias``: C intercepts.
    """

    class_names: Tuple[str, ...]
    cue_names: Tuple[str, ...]
    mean: np.ndarray
    scale: np.ndarray
    weight: np.ndarray
    bias: np.ndarray

    def __post_init__(self) -> None:
        classes, inputs = len(self.class_names), len(self.class_names) + len(self.cue_names)
        shapes = {'mean': (inputs,), 'scale': (inputs,), 'weight': (classes, inputs),
                  'bias': (classes,)}
        for name, shape in shapes.items():
            array = np.asarray(getattr(self, name), dtype=np.float64)
            if array.shape != shape:
                raise ValueError(f'challenge calibration: {name} must have shape {shape} for '
                                 f'{classes} classes and {len(self.cue_names)} cues, got '
                                 f'{array.shape}')
            if not np.isfinite(array).all():
                raise ValueError(f'challenge calibration: {name} holds NaN or infinite values')
            array.setflags(write=False)
            object.__setattr__(self, name, array)
        if (self.scale <= 0).any():
            raise ValueError('challenge calibration: scale must be positive')
        object.__setattr__(self, 'class_names', tuple(self.class_names))
        object.__setattr__(self, 'cue_names', tuple(self.cue_names))

    def probabilities(self, logits: np.ndarray, cues: np.ndarray) -> np.ndarray:
        """Return the calibrated B x C float32 values of B x C logits and B x F cues."""
        inputs = np.concatenate([np.asarray(logits, np.float64).reshape(len(logits), -1),
                                 np.asarray(cues, np.float64).reshape(len(cues), -1)], axis=1)
        if inputs.shape[1] != len(self.mean):
            raise ValueError(f'challenge calibration expects {len(self.class_names)} logits and '
                             f'{len(self.cue_names)} cues, got {inputs.shape[1]} values in all')
        scores = (inputs - self.mean) / self.scale @ self.weight.T + self.bias
        with np.errstate(over='ignore'):
            return (1.0 / (1.0 + np.exp(-scores))).astype(np.float32)

    def check_matches(self, class_names: Sequence[str], cue_names: Sequence[str]) -> None:
        """Check that the calibration was fitted for these classes and cues (ValueError)."""
        if tuple(class_names) != self.class_names:
            raise ValueError(f'challenge calibration was fitted for classes {self.class_names}, '
                             f'the model has {tuple(class_names)}')
        if tuple(cue_names) != self.cue_names:
            raise ValueError(f'challenge calibration was fitted on cues {self.cue_names}; this '
                             f'version measures {tuple(cue_names)}: fit it again '
                             '(simtrack-calibrate)')

    def to_dict(self) -> Dict[str, Any]:
        """Plain JSON-ready data (:meth:`from_dict` reads it back)."""
        return {'class_names': list(self.class_names), 'cue_names': list(self.cue_names),
                'mean': self.mean.tolist(), 'scale': self.scale.tolist(),
                'weight': self.weight.tolist(), 'bias': self.bias.tolist()}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> 'ChallengeCalibration':
        """Read :meth:`to_dict`'s data; ValueError naming what is missing or malformed."""
        if not isinstance(data, Mapping):
            raise ValueError(f'challenge calibration must be a mapping, got '
                             f'{type(data).__name__}')
        try:
            names = {key: tuple(str(v) for v in data[key])
                     for key in ('class_names', 'cue_names')}
            arrays = {key: np.asarray(data[key], dtype=np.float64)
                      for key in ('mean', 'scale', 'weight', 'bias')}
        except KeyError as exc:
            raise ValueError(f'challenge calibration lacks {exc.args[0]!r}') from None
        except (TypeError, ValueError) as exc:
            raise ValueError(f'challenge calibration is malformed: {exc}') from None
        return cls(**names, **arrays)


def head_only_classes(labels: np.ndarray, known: np.ndarray,
                      min_examples: int = MIN_EXAMPLES) -> List[int]:
    """Return the classes with fewer than ``min_examples`` judged positive or negative frames."""
    judged = np.asarray(known, bool)
    positive = (np.nan_to_num(labels) > 0.5) & judged
    counts = np.minimum(positive.sum(axis=0), (judged & ~positive).sum(axis=0))
    return [int(c) for c in np.flatnonzero(counts < min_examples)]


def fitted_by_logistic_regression(class_names: Sequence[str], cue_names: Sequence[str],
                                  inputs: np.ndarray, labels: np.ndarray, known: np.ndarray,
                                  l2: float = DEFAULT_L2, iterations: int = 500,
                                  min_examples: int = MIN_EXAMPLES) -> ChallengeCalibration:
    """Fit the calibration on N x (C + F) ``inputs`` (logits first) with 0/1 ``labels`` (N x C).

    ``known`` (N x C bool) masks the labels that count. Minimises the mean masked binary cross
    entropy plus ``l2`` times the squared weights, by L-BFGS on standardised inputs. The
    :func:`head_only_classes` keep the head's probability: their row returns their own logit.
    """
    inputs = np.asarray(inputs, np.float64)
    mean, scale = inputs.mean(axis=0), inputs.std(axis=0)
    scale = np.where(scale > 1e-6, scale, 1.0)
    x = torch.tensor((inputs - mean) / scale, dtype=torch.float64)
    y = torch.tensor(np.nan_to_num(labels), dtype=torch.float64)
    head_only = head_only_classes(labels, known, min_examples)
    mask = torch.tensor(known, dtype=torch.float64)
    mask[:, head_only] = 0.0                     # not fitted: a one-sided class would diverge
    weight = torch.zeros(y.shape[1], x.shape[1], dtype=torch.float64, requires_grad=True)
    bias = torch.zeros(y.shape[1], dtype=torch.float64, requires_grad=True)
    optimizer = torch.optim.LBFGS([weight, bias], max_iter=iterations,
                                  line_search_fn='strong_wolfe')

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        losses = torch.nn.functional.binary_cross_entropy_with_logits(
            x @ weight.T + bias, y, reduction='none')
        loss = (losses * mask).sum() / mask.sum().clamp(min=1) + l2 * (weight ** 2).sum()
        loss.backward()
        return loss

    optimizer.step(closure)
    if not math.isfinite(float(closure().detach())):
        raise ValueError('challenge calibration fit diverged')
    weights, biases = weight.detach().numpy().copy(), bias.detach().numpy().copy()
    for index in head_only:
        # scale * (logit - mean) / scale + mean: the logit itself.
        weights[index] = 0.0
        weights[index, index] = scale[index]
        biases[index] = mean[index]
    return ChallengeCalibration(tuple(class_names), tuple(cue_names), mean, scale, weights,
                                biases)


__all__ = ['ChallengeCalibration', 'DEFAULT_L2', 'MIN_EXAMPLES', 'fitted_by_logistic_regression',
           'head_only_classes']
