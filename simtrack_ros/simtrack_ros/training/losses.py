"""Training losses: class weights, box GIoU/L1 and the joint SimTrack loss.

Boxes are normalised to the search crop. The model predicts ``pred_boxes`` as (cx, cy, w, h);
the losses compare (x1, y1, x2, y2) boxes, as STARK/SimTrack do.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Optional, Tuple, Union

import numpy as np
import torch
from torch import nn
import torch.nn.functional as F

ArrayLike = Union[np.ndarray, torch.Tensor, list]
#: Keeps areas and enclosing areas of degenerate boxes away from 0 / 0.
_EPS = 1e-7


def class_weights(counts: ArrayLike) -> np.ndarray:
    """Inverse-frequency class weights (the design guide's formula), float32.

    ``w_i = total / (num_classes * count_i)``, then ``w / w.sum() * num_classes``. A class
    with no samples gets weight 0 (the guide's formula would divide by zero): it has no sample
    to weigh, and its 0 keeps the other weights finite.
    """
    counts = np.asarray(counts, dtype=np.float64)
    if counts.ndim != 1 or counts.size == 0:
        raise ValueError(f'class counts must be a non-empty vector, got shape {counts.shape}')
    if not np.isfinite(counts).all() or (counts < 0).any():
        raise ValueError(f'class counts must be finite and non-negative, got {counts.tolist()}')
    present = counts > 0
    if not present.any():
        raise ValueError('class counts are all zero: no labelled sample to weigh')
    num_classes = counts.size
    weights = np.zeros_like(counts)
    weights[present] = counts.sum() / (num_classes * counts[present])
    return (weights / weights.sum() * num_classes).astype(np.float32)


def positive_weights(positives: ArrayLike, judged: ArrayLike) -> np.ndarray:
    """Per-class BCE ``pos_weight`` = judged negatives / judged positives, float32.

    ``positives`` and ``judged`` are N×C 0/1 arrays (multi-label targets and judged masks);
    only judged entries count. A class without judged positives or without judged negatives
    gets 1 (no re-weighting: one side of its loss is empty anyway).
    """
    positives = np.asarray(positives, dtype=np.float64)
    judged = np.asarray(judged, dtype=np.float64)
    if positives.shape != judged.shape or positives.ndim != 2:
        raise ValueError(f'positives {positives.shape} and judged {judged.shape} must both '
                         'be N×C')
    pos = (positives * judged).sum(axis=0)
    neg = ((1.0 - positives) * judged).sum(axis=0)
    weights = np.ones_like(pos)
    both = (pos > 0) & (neg > 0)
    weights[both] = neg[both] / pos[both]
    return weights.astype(np.float32)


def box_cxcywh_to_xyxy(boxes: torch.Tensor) -> torch.Tensor:
    """(cx, cy, w, h) → (x1, y1, x2, y2) on the last dimension."""
    cx, cy, w, h = boxes.unbind(-1)
    return torch.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], dim=-1)


def _area(boxes: torch.Tensor) -> torch.Tensor:
    """Area of xyxy boxes; inverted boxes (x2 < x1 or y2 < y1) have area 0."""
    sizes = (boxes[..., 2:] - boxes[..., :2]).clamp(min=0)
    return sizes[..., 0] * sizes[..., 1]


def _iou_union(boxes1: torch.Tensor, boxes2: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """Return the IoU and the union area of paired xyxy boxes."""
    lt = torch.maximum(boxes1[..., :2], boxes2[..., :2])
    rb = torch.minimum(boxes1[..., 2:], boxes2[..., 2:])
    inter = (rb - lt).clamp(min=0).prod(dim=-1)
    union = _area(boxes1) + _area(boxes2) - inter
    return inter / union.clamp(min=_EPS), union


def box_iou(boxes1: torch.Tensor, boxes2: torch.Tensor) -> torch.Tensor:
    """Return the IoU of paired xyxy boxes (…×4 each) → …; 0 where both boxes are empty."""
    return _iou_union(boxes1, boxes2)[0]


def generalized_box_iou(boxes1: torch.Tensor, boxes2: torch.Tensor) -> torch.Tensor:
    """Return the GIoU of paired xyxy boxes (…×4 each), in [-1, 1]; finite when degenerate."""
    iou, union = _iou_union(boxes1, boxes2)
    lt = torch.minimum(boxes1[..., :2], boxes2[..., :2])
    rb = torch.maximum(boxes1[..., 2:], boxes2[..., 2:])
    enclosing = (rb - lt).clamp(min=0).prod(dim=-1)
    return iou - (enclosing - union) / enclosing.clamp(min=_EPS)


def giou_loss(pred_xyxy: torch.Tensor, target_xyxy: torch.Tensor) -> torch.Tensor:
    """Mean ``1 - GIoU`` over paired xyxy boxes (0 for identical boxes, up to 2)."""
    return (1.0 - generalized_box_iou(pred_xyxy, target_xyxy)).mean()


@dataclass
class LossWeights:
    """Weights of the joint loss terms (official SimTrack: GIoU 2, L1 5)."""

    giou: float = 2.0
    l1: float = 5.0
    cls: float = 1.0


def _as_tensor(values: Optional[ArrayLike]) -> Optional[torch.Tensor]:
    return None if values is None else torch.as_tensor(np.asarray(values), dtype=torch.float32)


class SimTrackLoss(nn.Module):
    """Joint loss ``giou * GIoU + l1 * L1 + cls * classification``.

    The classification term is class-weighted cross-entropy (softmax head) or per-class BCE
    with ``pos_weight``, averaged over judged entries only (multi-label head). Samples whose
    ``has_label`` is False add nothing to it. Box terms need ``train_box``, the class term
    ``train_cls``; ``forward`` returns ``total`` plus the terms it computed (``giou``, ``l1``,
    ``cls``), unweighted. Computed in float32 whatever the autocast dtype.
    """

    def __init__(self, weights: Optional[LossWeights] = None, multi_label: bool = False,
                 class_weight: Optional[ArrayLike] = None,
                 pos_weight: Optional[ArrayLike] = None, train_box: bool = True,
                 train_cls: bool = True) -> None:
        super().__init__()
        if not (train_box or train_cls):
            raise ValueError('SimTrackLoss needs train_box or train_cls')
        if multi_label and class_weight is not None:
            raise ValueError('class_weight is for the softmax head; use pos_weight')
        if not multi_label and pos_weight is not None:
            raise ValueError('pos_weight is for the multi-label head; use class_weight')
        self.weights = weights or LossWeights()
        self.multi_label = multi_label
        self.train_box = train_box
        self.train_cls = train_cls
        self.register_buffer('class_weight', _as_tensor(class_weight), persistent=False)
        self.register_buffer('pos_weight', _as_tensor(pos_weight), persistent=False)

    def forward(self, outputs: Dict[str, torch.Tensor], batch: Dict[str, torch.Tensor]
                ) -> Dict[str, torch.Tensor]:
        """Compute the terms from the model's ``outputs`` and a dataset ``batch``."""
        terms: Dict[str, torch.Tensor] = {}
        total = 0.0
        if self.train_box:
            pred = box_cxcywh_to_xyxy(outputs['pred_boxes'].float().reshape(-1, 4))
            target = batch['search_box'].float().reshape(-1, 4).clamp(0.0, 1.0)
            terms['giou'] = giou_loss(pred, target)
            terms['l1'] = F.l1_loss(pred, target)
            total = self.weights.giou * terms['giou'] + self.weights.l1 * terms['l1']
        if self.train_cls:
            logits = outputs['cls_logits'].float()
            labelled = batch.get('has_label')
            labelled = (torch.ones(len(logits), device=logits.device) if labelled is None
                        else labelled.to(logits.device, torch.float32))
            terms['cls'] = (self._bce(logits, batch, labelled) if self.multi_label
                            else self._cross_entropy(logits, batch['label'], labelled))
            total = total + self.weights.cls * terms['cls']
        return {'total': total, **terms}

    def _cross_entropy(self, logits: torch.Tensor, labels: torch.Tensor,
                       labelled: torch.Tensor) -> torch.Tensor:
        """Weighted mean as ``nn.CrossEntropyLoss(weight)``, over labelled samples."""
        labels = labels.to(logits.device, torch.long)
        # Unlabelled rows carry -100 (NO_LABEL): give them a valid index, their weight is 0.
        safe = torch.where(labelled > 0, labels, torch.zeros_like(labels))
        per_sample = F.cross_entropy(logits, safe, reduction='none')
        weight = labelled if self.class_weight is None else self.class_weight[safe] * labelled
        return (per_sample * weight).sum() / weight.sum().clamp(min=_EPS)

    def _bce(self, logits: torch.Tensor, batch: Dict[str, torch.Tensor],
             labelled: torch.Tensor) -> torch.Tensor:
        """Per-class BCE with ``pos_weight``, mean over judged entries of labelled samples."""
        targets = batch['multi_label'].to(logits.device, torch.float32)
        mask = batch['judged'].to(logits.device, torch.float32) * labelled[:, None]
        per_entry = F.binary_cross_entropy_with_logits(
            logits, targets, pos_weight=self.pos_weight, reduction='none')
        return (per_entry * mask).sum() / mask.sum().clamp(min=1.0)
