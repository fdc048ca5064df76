"""Epoch metrics: classification (single- and multi-label) and box IoU.

Meters hold sums as tensors, so the metrics of a data-parallel run are those of the whole
dataset: :meth:`SummedMeter.all_reduce` adds every rank's state (torch.distributed), and
:meth:`SummedMeter.merge` adds another meter's. Values that are undefined (no sample of a class,
no sample at all) are None, so the result is plain JSON.
"""
from __future__ import annotations

from typing import Any, Dict, List, Mapping, Optional, Sequence

import torch
import torch.distributed as dist

from simtrack_ros.challenges import CHALLENGE_NAMES, NORMAL
from simtrack_ros.training.losses import box_iou

#: IoU above which a box counts as a success in ``share_iou_50``.
IOU_SUCCESS = 0.5


class SummedMeter:
    """A meter whose state is a dict of tensors that add up across batches and ranks."""

    def __init__(self) -> None:
        self.state: Dict[str, torch.Tensor] = self._zeros()

    def _zeros(self) -> Dict[str, torch.Tensor]:
        raise NotImplementedError

    def reset(self) -> None:
        """Forget every update."""
        self.state = self._zeros()

    def state_tensors(self) -> Dict[str, torch.Tensor]:
        """Return copies of the state tensors (CPU), e.g. to reduce them by other means."""
        return {name: value.clone() for name, value in self.state.items()}

    def load_state_tensors(self, tensors: Mapping[str, torch.Tensor]) -> None:
        """Replace the state by ``tensors`` (same names and shapes as :meth:`state_tensors`)."""
        zeros = self._zeros()
        if set(tensors) != set(zeros):
            raise ValueError(f'state names {sorted(tensors)} differ from {sorted(zeros)}')
        for name, zero in zeros.items():
            value = torch.as_tensor(tensors[name]).detach().cpu()
            if value.shape != zero.shape:
                raise ValueError(f'state {name!r} has shape {tuple(value.shape)}, '
                                 f'expected {tuple(zero.shape)}')
            if not zero.is_floating_point():
                value = value.round()
            zeros[name] = value.to(zero.dtype)
        self.state = zeros

    def merge(self, other: 'SummedMeter') -> None:
        """Add another meter's state to this one."""
        if type(other) is not type(self):
            raise TypeError(f'cannot merge {type(other).__name__} into {type(self).__name__}')
        self.load_state_tensors({name: value + other.state[name]
                                 for name, value in self.state.items()})

    def all_reduce(self, group: Optional[Any] = None) -> None:
        """Sum the state over the ranks of ``group`` (no-op without torch.distributed).

        One collective call on a float64 vector (exact for counts below 2**53), on the current
        CUDA device for the NCCL backend and on the CPU otherwise.
        """
        if not (dist.is_available() and dist.is_initialized()):
            return
        device = (torch.device('cuda', torch.cuda.current_device())
                  if dist.get_backend(group) == 'nccl' else torch.device('cpu'))
        names = list(self.state)
        flat = torch.cat([self.state[n].reshape(-1).to(torch.float64) for n in names])
        flat = flat.to(device)
        dist.all_reduce(flat, op=dist.ReduceOp.SUM, group=group)
        parts = flat.cpu().split([self.state[n].numel() for n in names])
        self.load_state_tensors({n: part.reshape(self.state[n].shape)
                                 for n, part in zip(names, parts)})


def _ratio(numerator: torch.Tensor, denominator: torch.Tensor) -> List[Optional[float]]:
    pairs = zip(numerator.tolist(), denominator.tolist())
    return [float(n / d) if d > 0 else None for n, d in pairs]


def _mean(values: Sequence[Optional[float]]) -> Optional[float]:
    defined = [v for v in values if v is not None]
    return sum(defined) / len(defined) if defined else None


def _f1(tp: torch.Tensor, fp: torch.Tensor, fn: torch.Tensor) -> List[Optional[float]]:
    """Per-class F1 = 2TP / (2TP + FP + FN); None for a class neither present nor predicted."""
    return _ratio(2 * tp, 2 * tp + fp + fn)


class ClassificationMeter(SummedMeter):
    """Accuracy, per-class accuracy, F1 and the confusion matrix, with the always-normal baseline.

    The predicted class is the arg-max of the scores (as the node publishes it), for both heads.
    Multi-label F1 counts judged entries only; its predictions are ``sigmoid > threshold``
    for a multi-label head and the one-hot arg-max for a softmax head. Macro-F1 averages the
    classes that occur in the truth or the predictions (as scikit-learn's default).
    """

    def __init__(self, class_names: Sequence[str] = CHALLENGE_NAMES, multi_label: bool = False,
                 threshold: float = 0.5) -> None:
        if NORMAL not in class_names:
            raise ValueError(f'class names {list(class_names)} lack {NORMAL!r} (the baseline)')
        self.class_names = tuple(class_names)
        self.multi_label = multi_label
        self.threshold = threshold
        super().__init__()

    def _zeros(self) -> Dict[str, torch.Tensor]:
        n = len(self.class_names)
        zeros = {'confusion': torch.zeros(n, n, dtype=torch.int64)}
        for name in ('ml_tp', 'ml_fp', 'ml_fn', 'ml_positives', 'ml_judged'):
            zeros[name] = torch.zeros(n, dtype=torch.int64)
        return zeros

    @torch.no_grad()
    def update(self, scores: torch.Tensor, labels: torch.Tensor,
               judged: Optional[torch.Tensor] = None, *,
               multi_labels: Optional[torch.Tensor] = None,
               has_label: Optional[torch.Tensor] = None, probabilities: bool = False) -> None:
        """Add a batch.

        ``scores`` B×C logits (or probabilities with ``probabilities=True``); ``labels`` B
        class ids; ``multi_labels`` and ``judged`` B×C 0/1 for the multi-label F1 (``judged``
        defaults to all ones); rows whose ``has_label`` is False are skipped.
        """
        scores = scores.detach().float().cpu()
        labels = torch.as_tensor(labels).cpu()
        n = len(self.class_names)
        if scores.ndim != 2 or scores.shape[1] != n:
            raise ValueError(f'scores must be B×{n}, got {tuple(scores.shape)}')
        if labels.shape != scores.shape[:1]:
            raise ValueError(f'labels must be class ids of shape ({len(scores)},), got '
                             f'{tuple(labels.shape)}; pass multi-label targets as multi_labels=')
        if judged is not None and multi_labels is None:
            raise ValueError('judged needs multi_labels')
        keep = (torch.ones(len(labels), dtype=torch.bool) if has_label is None
                else torch.as_tensor(has_label).cpu().bool())
        scores, labels = scores[keep], labels[keep].long()
        if labels.numel() and not 0 <= int(labels.min()) <= int(labels.max()) < n:
            raise ValueError(f'labels must be class ids in [0, {n}), got {labels.tolist()}')
        predicted = scores.argmax(dim=1)
        self.state['confusion'] += torch.bincount(
            labels * n + predicted, minlength=n * n).reshape(n, n)
        if multi_labels is None:
            return
        targets = torch.as_tensor(multi_labels).cpu()[keep].bool()
        mask = (torch.ones_like(targets) if judged is None
                else torch.as_tensor(judged).cpu()[keep].bool())
        if self.multi_label:
            probs = scores if probabilities else torch.sigmoid(scores)
            flags = probs > self.threshold
        else:
            flags = torch.nn.functional.one_hot(predicted, n).bool()
        self.state['ml_tp'] += (flags & targets & mask).sum(0)
        self.state['ml_fp'] += (flags & ~targets & mask).sum(0)
        self.state['ml_fn'] += (~flags & targets & mask).sum(0)
        self.state['ml_positives'] += (targets & mask).sum(0)
        self.state['ml_judged'] += mask.sum(0)

    def update_from_batch(self, scores: torch.Tensor, batch: Mapping[str, Any],
                          probabilities: bool = False) -> None:
        """:meth:`update` with a dataset batch ('label', 'multi_label', 'judged', 'has_label')."""
        self.update(scores, batch['label'], batch.get('judged'),
                    multi_labels=batch.get('multi_label'), has_label=batch.get('has_label'),
                    probabilities=probabilities)

    def _single_label(self, confusion: torch.Tensor) -> Dict[str, Any]:
        support, predicted, tp = confusion.sum(1), confusion.sum(0), confusion.diagonal()
        total = int(support.sum())
        f1 = _f1(tp, predicted - tp, support - tp)
        return {
            'accuracy': float(tp.sum()) / total if total else None,
            'macro_f1': _mean(f1),
            'per_class_accuracy': dict(zip(self.class_names, _ratio(tp, support))),
            'per_class_f1': dict(zip(self.class_names, f1)),
        }

    def _multi_label(self) -> Dict[str, Any]:
        s = self.state
        f1 = _f1(s['ml_tp'], s['ml_fp'], s['ml_fn'])
        normal = self.class_names.index(NORMAL)
        base_tp = torch.zeros_like(s['ml_tp'])
        base_tp[normal] = s['ml_positives'][normal]
        base_fp = torch.zeros_like(s['ml_fp'])
        base_fp[normal] = s['ml_judged'][normal] - s['ml_positives'][normal]
        base_f1 = _f1(base_tp, base_fp, s['ml_positives'] - base_tp)
        return {
            'macro_f1': _mean(f1),
            'per_class_f1': dict(zip(self.class_names, f1)),
            'positives': dict(zip(self.class_names, s['ml_positives'].tolist())),
            'judged': dict(zip(self.class_names, s['ml_judged'].tolist())),
            'baseline': {'macro_f1': _mean(base_f1),
                         'per_class_f1': dict(zip(self.class_names, base_f1))},
        }

    def compute(self) -> Dict[str, Any]:
        """Metrics as plain JSON data (class-keyed dicts in class order).

        ``baseline`` holds the same single-label metrics for a classifier that always answers
        'normal'; ``multi_label`` (only after multi-label updates) the judged-entry F1s.
        """
        confusion = self.state['confusion']
        baseline = torch.zeros_like(confusion)
        baseline[:, self.class_names.index(NORMAL)] = confusion.sum(1)
        result = {
            'samples': int(confusion.sum()),
            **self._single_label(confusion),
            'support': dict(zip(self.class_names, confusion.sum(1).tolist())),
            'class_names': list(self.class_names),
            'confusion': confusion.tolist(),
            'baseline': self._single_label(baseline),
        }
        if int(self.state['ml_judged'].sum()):
            result['multi_label'] = self._multi_label()
        return result


class BoxMeter(SummedMeter):
    """Mean IoU and the share of boxes with IoU > 0.5 (``share_iou_50``), xyxy boxes."""

    def _zeros(self) -> Dict[str, torch.Tensor]:
        return {'iou_sum': torch.zeros(1, dtype=torch.float64),
                'successes': torch.zeros(1, dtype=torch.int64),
                'count': torch.zeros(1, dtype=torch.int64)}

    @torch.no_grad()
    def update(self, pred_xyxy: torch.Tensor, target_xyxy: torch.Tensor) -> None:
        """Add paired boxes (B×4 each, or anything reshapable to it)."""
        iou = box_iou(pred_xyxy.detach().float().reshape(-1, 4).cpu(),
                      target_xyxy.detach().float().reshape(-1, 4).cpu())
        self.state['iou_sum'] += iou.double().sum()
        self.state['successes'] += int((iou > IOU_SUCCESS).sum())
        self.state['count'] += iou.numel()

    def compute(self) -> Dict[str, Any]:
        count = int(self.state['count'])
        return {
            'samples': count,
            'mean_iou': float(self.state['iou_sum']) / count if count else None,
            'share_iou_50': int(self.state['successes']) / count if count else None,
        }


def classification_report(metrics: Mapping[str, Any]) -> str:
    """Format :meth:`ClassificationMeter.compute` output as a text table for the console.

    ``base`` columns are the always-'normal' baseline (its accuracy on the accuracy row);
    ``mlF1``/``mlBase`` the judged-entry multi-label F1, when the metrics have them.
    """
    def cell(value: Optional[float]) -> str:
        return '     -' if value is None else f'{value:6.3f}'

    multi = metrics.get('multi_label')
    baseline = metrics['baseline']
    header = f'{"class":<24} {"support":>7} {"acc":>6} {"F1":>6} {"base":>6}'
    rows = []
    for name in metrics['class_names']:
        row = (f'{name:<24} {metrics["support"][name]:>7d} '
               f'{cell(metrics["per_class_accuracy"][name])} '
               f'{cell(metrics["per_class_f1"][name])} {cell(baseline["per_class_f1"][name])}')
        if multi:
            row += (f' {cell(multi["per_class_f1"][name])} '
                    f'{cell(multi["baseline"]["per_class_f1"][name])}')
        rows.append(row)
    rows.append(f'{"accuracy":<24} {metrics["samples"]:>7d} {cell(metrics["accuracy"])} '
                f'{"":>6} {cell(baseline["accuracy"])}')
    macro = (f'{"macro F1":<24} {"":>7} {"":>6} {cell(metrics["macro_f1"])} '
             f'{cell(baseline["macro_f1"])}')
    if multi:
        header += f' {"mlF1":>6} {"mlBase":>6}'
        macro += f' {cell(multi["macro_f1"])} {cell(multi["baseline"]["macro_f1"])}'
    return '\n'.join([header, *rows, macro])
