"""One-pass evaluation (OPE) metrics of single-object trackers, in numpy.

Boxes are ``(x, y, w, h)`` pixels, top-left corner first, in continuous coordinates (a box
covers ``[x, x + w) x [y, y + h)``). The definitions follow the benchmarks' own toolkits:

- **Success curve**: share of frames with IoU **>** t, at ``SUCCESS_THRESHOLDS`` = 0, 0.05,
  ..., 1 (21 points, OTB / LaSOT / pytracking). **AUC** = the mean of those 21 values. By
  this definition a perfect tracker scores 20/21 (no IoU is > 1); **AO** (GOT-10k's average
  overlap, the mean IoU) is the exact area under the continuous success curve and is 1 for a
  perfect tracker.
- **OP50 / OP75**: share of frames with IoU **>** 0.5 / 0.75 (GOT-10k's SR, pytracking's OP).
- **Precision curve**: share of frames whose centre error is **<=** t pixels, t = 0..50
  (51 points); **Prec@20** is its value at 20 px.
- **Normalised precision** (LaSOT): the centre difference divided by the ground-truth width
  and height per axis, then its Euclidean length; the curve is the share **<=** t for
  t = 0, 0.01, ..., 0.5. **NormPrec** is its value at 0.2 (pytracking, the number trackers
  publish); **NormPrec AUC** is its mean over [0, 0.5] (the LaSOT paper's ranking score).
- **Evaluated frames**: the first frame (the tracker is initialised with its ground truth) and
  frames without a valid target (absent, or a ground-truth box that is not finite or has no
  area) are left out of every box statistic, numerator and denominator, as GOT-10k does; the
  tracker's boxes on those frames are ignored. (LaSOT's toolkit instead keeps absent frames in
  the denominator as failures.)
- **Aggregation**: curves are computed per sequence and averaged over sequences (each
  sequence weighs the same, as OTB/LaSOT/pytracking); per-attribute curves pool the frames that
  carry the attribute over all sequences.
- **FPS**: tracked frames (every frame after the first, absent ones included) divided by the
  seconds the tracker spent on them.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch

from simtrack_ros.challenges import CHALLENGE_NAMES, single_label
from simtrack_ros.training.metrics import ClassificationMeter

#: IoU thresholds of the success curve (OTB/LaSOT: 0 to 1 in steps of 0.05).
SUCCESS_THRESHOLDS = np.linspace(0.0, 1.0, 21)
#: Centre-error thresholds of the precision curve, pixels (0 to 50).
PRECISION_THRESHOLDS = np.arange(51, dtype=np.float64)
#: Thresholds of the normalised precision curve (0 to 0.5 in steps of 0.01).
NORM_PRECISION_THRESHOLDS = np.arange(51, dtype=np.float64) / 100.0
PRECISION_AT = 20.0
NORM_PRECISION_AT = 0.2
OP_THRESHOLDS = (0.5, 0.75)


def _boxes(boxes: Any, name: str) -> np.ndarray:
    array = np.asarray(boxes, dtype=np.float64)
    if array.ndim == 1:
        array = array[None]
    if array.ndim != 2 or array.shape[1] != 4:
        raise ValueError(f'{name} must be N x 4 (x, y, w, h), got shape {array.shape}')
    return array


def iou_xywh(pred: Any, gt: Any) -> np.ndarray:
    """Per-row IoU of two N x 4 box arrays; 0 where a box is not finite or has no area."""
    pred, gt = _boxes(pred, 'pred'), _boxes(gt, 'gt')
    if pred.shape != gt.shape:
        raise ValueError(f'pred {pred.shape} and gt {gt.shape} differ in shape')
    with np.errstate(invalid='ignore'):
        low = np.maximum(pred[:, :2], gt[:, :2])
        high = np.minimum(pred[:, :2] + pred[:, 2:], gt[:, :2] + gt[:, 2:])
        inter = np.clip(high - low, 0.0, None).prod(axis=1)
        union = pred[:, 2:].prod(axis=1) + gt[:, 2:].prod(axis=1) - inter
        usable = (np.isfinite(pred).all(1) & np.isfinite(gt).all(1)
                  & (pred[:, 2:] > 0).all(1) & (gt[:, 2:] > 0).all(1))
        return np.where(usable, inter / np.where(usable, union, 1.0), 0.0)


def center_errors(pred: Any, gt: Any, normalized: bool = False) -> np.ndarray:
    """Distance between box centres, pixels; ``normalized``: each axis over the gt size.

    Infinite where a predicted box is not finite (a failure at every threshold).
    """
    pred, gt = _boxes(pred, 'pred'), _boxes(gt, 'gt')
    if pred.shape != gt.shape:
        raise ValueError(f'pred {pred.shape} and gt {gt.shape} differ in shape')
    diff = (pred[:, :2] + pred[:, 2:] / 2) - (gt[:, :2] + gt[:, 2:] / 2)
    if normalized:
        with np.errstate(divide='ignore', invalid='ignore'):
            diff = diff / gt[:, 2:]
    errors = np.sqrt((diff ** 2).sum(axis=1))
    return np.where(np.isfinite(errors), errors, np.inf)


def success_curve(ious: Any, thresholds: np.ndarray = SUCCESS_THRESHOLDS) -> np.ndarray:
    """Share of ``ious`` greater than each threshold (NaN for no IoU)."""
    ious = np.asarray(ious, dtype=np.float64).reshape(-1)
    if ious.size == 0:
        return np.full(len(thresholds), np.nan)
    return (ious[:, None] > np.asarray(thresholds)[None]).mean(axis=0)


def precision_curve(errors: Any, thresholds: np.ndarray = PRECISION_THRESHOLDS) -> np.ndarray:
    """Share of centre ``errors`` at most each threshold (NaN for no error)."""
    errors = np.asarray(errors, dtype=np.float64).reshape(-1)
    if errors.size == 0:
        return np.full(len(thresholds), np.nan)
    return (errors[:, None] <= np.asarray(thresholds)[None]).mean(axis=0)


def auc(curve: Any) -> float:
    """Area under a success curve as the benchmarks compute it: the mean of its points."""
    return float(np.mean(curve))


def overlap_precision(ious: Any, threshold: float) -> float:
    """Share of ``ious`` greater than ``threshold`` (OP50 for 0.5, OP75 for 0.75)."""
    ious = np.asarray(ious, dtype=np.float64).reshape(-1)
    return float(np.mean(ious > threshold)) if ious.size else float('nan')


def curve_at(curve: np.ndarray, thresholds: np.ndarray, value: float) -> float:
    """Return the curve's point at the threshold ``value`` (which must be on the grid)."""
    index = np.flatnonzero(np.isclose(thresholds, value))
    if index.size != 1:
        raise ValueError(f'{value} is not one of the curve thresholds')
    return float(curve[index[0]])


def fps(seconds: Any) -> float:
    """Frames per second over per-frame ``seconds`` (count / total); NaN with no time."""
    seconds = np.asarray(seconds, dtype=np.float64).reshape(-1)
    total = float(seconds.sum())
    return seconds.size / total if total > 0 else float('nan')


@dataclass
class SequenceResult:
    """One tracker's run over one sequence (every array has one row per frame).

    Attributes:
        name: the sequence name.
        boxes: N x 4 predicted ``(x, y, w, h)``; row 0 is the initial (ground-truth) box.
        gt: N x 4 ground-truth boxes (rows of absent frames may be anything).
        absent: N bool, True where the target is absent.
        seconds: N per-frame seconds (row 0: initialisation, not counted in FPS).
        probabilities: N x C class probabilities, NaN rows where there are none.
        class_names: the C class names of ``probabilities``.
        multi_label: True when ``probabilities`` are independent (sigmoid) per class.
        labels: N x len(CHALLENGE_NAMES) 0/1 label vectors (``FrameRecord.multi_label``
            order), NaN rows for frames without an annotation record.
        judged: N x len(CHALLENGE_NAMES) bool, which entries of ``labels`` are known.
        logits: N x C head logits, NaN rows where there are none (what a calibration is
            fitted on).
        cues: N x F measured challenge cues, NaN rows where there are none.
    """

    name: str
    boxes: np.ndarray
    gt: np.ndarray
    absent: np.ndarray
    seconds: np.ndarray
    probabilities: Optional[np.ndarray] = None
    class_names: Tuple[str, ...] = ()
    multi_label: bool = False
    labels: Optional[np.ndarray] = None
    judged: Optional[np.ndarray] = None
    logits: Optional[np.ndarray] = None
    cues: Optional[np.ndarray] = None

    def __post_init__(self) -> None:
        self.boxes = _boxes(self.boxes, 'boxes')
        self.gt = _boxes(self.gt, 'gt')
        count = len(self.gt)
        self.absent = np.asarray(self.absent, dtype=bool).reshape(-1)
        self.seconds = np.asarray(self.seconds, dtype=np.float64).reshape(-1)
        for field in ('boxes', 'absent', 'seconds'):
            if len(getattr(self, field)) != count:
                raise ValueError(f'{self.name}: {field} has {len(getattr(self, field))} rows '
                                 f'for {count} frames')
        self.class_names = tuple(self.class_names)
        if self.probabilities is not None:
            self.probabilities = np.asarray(self.probabilities, dtype=np.float64)
            if self.probabilities.shape != (count, len(self.class_names)):
                raise ValueError(f'{self.name}: probabilities must be {count} x '
                                 f'{len(self.class_names)}, got {self.probabilities.shape}')
        for field in ('logits', 'cues'):
            array = getattr(self, field)
            if array is not None:
                array = np.asarray(array, dtype=np.float64)
                if array.ndim != 2 or len(array) != count:
                    raise ValueError(f'{self.name}: {field} must have one row per frame '
                                     f'({count}), got shape {array.shape}')
                setattr(self, field, array)
        if (self.labels is None) != (self.judged is None):
            raise ValueError(f'{self.name}: labels and judged go together')
        if self.labels is not None:
            shape = (count, len(CHALLENGE_NAMES))
            self.labels = np.asarray(self.labels, dtype=np.float64)
            self.judged = np.asarray(self.judged, dtype=bool)
            if self.labels.shape != shape or self.judged.shape != shape:
                raise ValueError(f'{self.name}: labels and judged must be {shape}, got '
                                 f'{self.labels.shape} and {self.judged.shape}')

    def __len__(self) -> int:
        return len(self.gt)

    def evaluated(self) -> np.ndarray:
        """Frames the box statistics count: not the first, target present with a valid box."""
        valid = ~self.absent & np.isfinite(self.gt).all(1) & (self.gt[:, 2:] > 0).all(1)
        valid[:1] = False
        return valid


def _box_metrics(ious: np.ndarray, errors: np.ndarray, norm_errors: np.ndarray
                 ) -> Dict[str, Any]:
    """Curves and scalar scores of one set of frames."""
    success = success_curve(ious)
    precision = precision_curve(errors)
    norm = precision_curve(norm_errors, NORM_PRECISION_THRESHOLDS)
    return {'success': success, 'precision': precision, 'norm_precision': norm,
            'ao': float(np.mean(ious)) if ious.size else float('nan'),
            'op50': overlap_precision(ious, OP_THRESHOLDS[0]),
            'op75': overlap_precision(ious, OP_THRESHOLDS[1])}


def _scores(metrics: Dict[str, Any]) -> Dict[str, Optional[float]]:
    """Return the scalar scores of averaged curves, None where undefined."""
    values = {
        'auc': auc(metrics['success']),
        'ao': metrics['ao'],
        'op50': metrics['op50'],
        'op75': metrics['op75'],
        'precision_20': curve_at(metrics['precision'], PRECISION_THRESHOLDS, PRECISION_AT),
        'norm_precision': curve_at(metrics['norm_precision'], NORM_PRECISION_THRESHOLDS,
                                   NORM_PRECISION_AT),
        'norm_precision_auc': auc(metrics['norm_precision']),
    }
    return {key: _json_float(value) for key, value in values.items()}


def _json_float(value: float) -> Optional[float]:
    return float(value) if np.isfinite(value) else None


def _curve_list(curve: np.ndarray) -> List[Optional[float]]:
    return [_json_float(v) for v in curve]


def sequence_frames(result: SequenceResult) -> Dict[str, np.ndarray]:
    """IoU, centre error and normalised centre error of the evaluated frames of ``result``."""
    keep = result.evaluated()
    pred, gt = result.boxes[keep], result.gt[keep]
    return {'ious': iou_xywh(pred, gt), 'errors': center_errors(pred, gt),
            'norm_errors': center_errors(pred, gt, normalized=True),
            'index': np.flatnonzero(keep)}


def _mean_metrics(parts: Sequence[Dict[str, Any]]) -> Dict[str, Any]:
    """Average per-sequence metrics (curves and scalars) with equal weights."""
    keys = ('success', 'precision', 'norm_precision', 'ao', 'op50', 'op75')
    return {key: np.mean([part[key] for part in parts], axis=0) for key in keys}


def attribute_metrics(results: Sequence[SequenceResult]) -> Dict[str, Dict[str, Any]]:
    """Per-class AUC, OP50 and frame count over the evaluated frames flagged with the class.

    Frames are pooled over all sequences; a frame counts for a class when its annotation
    record judged the class and flagged it (``normal``: no challenge flagged).
    """
    pooled: Dict[str, List[np.ndarray]] = {name: [] for name in CHALLENGE_NAMES}
    for result in results:
        if result.labels is None:
            continue
        frames = sequence_frames(result)
        labels = result.labels[frames['index']]
        judged = result.judged[frames['index']]
        for column, name in enumerate(CHALLENGE_NAMES):
            flagged = judged[:, column] & (labels[:, column] == 1)
            pooled[name].append(frames['ious'][flagged])
    out = {}
    for name, parts in pooled.items():
        ious = np.concatenate(parts) if parts else np.zeros(0)
        if ious.size:
            out[name] = {'frames': int(ious.size), 'auc': auc(success_curve(ious)),
                         'op50': overlap_precision(ious, OP_THRESHOLDS[0])}
    return out


def classification_metrics(results: Sequence[SequenceResult]) -> Optional[Dict[str, Any]]:
    """Classifier metrics (``ClassificationMeter``) over frames with probabilities and a record.

    The true single label is the priority rule (``challenges.single_label``) over the flagged
    classes the model knows; ``head`` says 'single-label' or 'multi-label'. None when no frame
    has both probabilities and a record.
    """
    usable = [r for r in results if r.probabilities is not None and r.labels is not None]
    if not usable:
        return None
    names, multi = usable[0].class_names, usable[0].multi_label
    if any(r.class_names != names or r.multi_label != multi for r in usable):
        raise ValueError('sequences differ in class names or head kind')
    meter = ClassificationMeter(names, multi_label=multi)
    columns = [CHALLENGE_NAMES.index(name) for name in names]
    for result in usable:
        keep = np.isfinite(result.probabilities).all(1) & np.isfinite(result.labels).all(1)
        if not keep.any():
            continue
        vectors = result.labels[keep][:, columns]
        labels = [names.index(single_label(dict(zip(names, row)))) for row in vectors]
        meter.update(torch.from_numpy(result.probabilities[keep]), torch.tensor(labels),
                     torch.from_numpy(result.judged[keep][:, columns]),
                     multi_labels=torch.from_numpy(vectors), probabilities=True)
    if not int(meter.state['confusion'].sum()):
        return None
    return {**meter.compute(), 'head': 'multi-label' if multi else 'single-label'}


def summarize(results: Sequence[SequenceResult]) -> Dict[str, Any]:
    """Every metric of one tracker over ``results``, as plain JSON data.

    Keys: the scores (``auc``, ``ao``, ``op50``, ``op75``, ``precision_20``,
    ``norm_precision``, ``norm_precision_auc``; None when no frame is evaluated), ``fps``,
    ``sequences``, ``frames`` (evaluated), ``curves`` (thresholds and values),
    ``per_sequence`` scores, ``attributes`` (:func:`attribute_metrics`) and
    ``classification`` (:func:`classification_metrics`, or None).
    """
    per_sequence, parts = {}, []
    for result in results:
        frames = sequence_frames(result)
        metrics = _box_metrics(frames['ious'], frames['errors'], frames['norm_errors'])
        per_sequence[result.name] = {**_scores(metrics), 'frames': int(frames['ious'].size)}
        if frames['ious'].size:
            parts.append(metrics)
    tracked = np.concatenate([r.seconds[1:] for r in results]) if results else np.zeros(0)
    summary: Dict[str, Any] = {
        'sequences': len(results),
        'frames': int(sum(p['frames'] for p in per_sequence.values())),
        'fps': _json_float(fps(tracked)),
    }
    empty = np.zeros(0)
    mean = _mean_metrics(parts) if parts else _box_metrics(empty, empty, empty)
    summary.update(_scores(mean))
    summary['curves'] = {
        'success_thresholds': SUCCESS_THRESHOLDS.tolist(),
        'precision_thresholds': PRECISION_THRESHOLDS.tolist(),
        'norm_precision_thresholds': NORM_PRECISION_THRESHOLDS.tolist(),
        **{key: _curve_list(mean[key]) for key in ('success', 'precision', 'norm_precision')},
    }
    summary['per_sequence'] = per_sequence
    summary['attributes'] = attribute_metrics(results)
    summary['classification'] = classification_metrics(results)
    return summary
