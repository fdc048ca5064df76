"""OPE metrics against hand-computed values (evaluation/ope.py)."""
from __future__ import annotations

import json

import numpy as np
import pytest

from simtrack_ros.challenges import CHALLENGE_NAMES
from simtrack_ros.evaluation.ope import (
    center_errors, iou_xywh, NORM_PRECISION_THRESHOLDS, precision_curve, SequenceResult,
    success_curve, SUCCESS_THRESHOLDS, summarize)

OCCLUSION = CHALLENGE_NAMES.index('occlusion')
NORMAL = CHALLENGE_NAMES.index('normal')


def moving_boxes(count: int) -> np.ndarray:
    """40 x 20 boxes moving right by 2 px a frame."""
    boxes = np.tile([100.0, 50.0, 40.0, 20.0], (count, 1))
    boxes[:, 0] += 2 * np.arange(count)
    return boxes


def result(name: str, pred: np.ndarray, gt: np.ndarray, absent=None, seconds=None,
           **extra) -> SequenceResult:
    count = len(gt)
    return SequenceResult(name, pred, gt,
                          np.zeros(count, bool) if absent is None else absent,
                          np.full(count, 0.01) if seconds is None else seconds, **extra)


def test_iou_and_center_error_by_hand():
    pred = [[0, 0, 10, 10], [5, 0, 10, 10], [20, 20, 5, 5], [0, 0, 0, 10], [np.nan, 0, 1, 1]]
    gt = [[0, 0, 10, 10]] * 5
    assert iou_xywh(pred, gt) == pytest.approx([1.0, 50 / 150, 0.0, 0.0, 0.0])
    assert center_errors(pred, gt)[:3] == pytest.approx([0.0, 5.0, np.hypot(17.5, 17.5)])
    assert center_errors(pred, gt)[4] == np.inf
    # Normalised: each axis over the ground-truth size (LaSOT).
    assert center_errors([[3, 4, 40, 20]], [[0, 0, 40, 20]], normalized=True) == pytest.approx(
        [np.hypot(3 / 40, 4 / 20)])


def test_curves_use_strict_overlap_and_inclusive_distance():
    assert success_curve([0.5], [0.5, 0.49]) == pytest.approx([0.0, 1.0])   # IoU > t
    assert precision_curve([20.0], [20.0, 19.0]) == pytest.approx([1.0, 0.0])  # error <= t
    assert np.isnan(success_curve([])).all()


def test_perfect_tracker():
    gt = moving_boxes(11)
    summary = summarize([result('a', gt.copy(), gt)])
    # The benchmarks' AUC (mean over 0, 0.05, ..., 1 of the share with IoU > t) can't reach 1:
    # no IoU is > 1. AO, the exact area under the success curve, is 1.
    assert summary['auc'] == pytest.approx(20 / 21)
    assert summary['ao'] == pytest.approx(1.0)
    for key in ('op50', 'op75', 'precision_20', 'norm_precision', 'norm_precision_auc'):
        assert summary[key] == pytest.approx(1.0), key
    assert summary['frames'] == 10  # the first (initialisation) frame is not counted
    assert summary['curves']['success'] == pytest.approx([1.0] * 20 + [0.0])


def test_constant_offset_gives_the_known_curves():
    gt = moving_boxes(11)
    pred = gt + [3.0, 4.0, 0.0, 0.0]  # centre error 5 px, IoU 37*16 / (1600 - 592)
    summary = summarize([result('a', pred, gt)])
    iou = 37 * 16 / (2 * 800 - 37 * 16)
    assert summary['curves']['precision'] == [0.0] * 5 + [1.0] * 46
    assert summary['precision_20'] == 1.0
    assert summary['ao'] == pytest.approx(iou)
    passing = int(np.sum(iou > SUCCESS_THRESHOLDS))
    assert passing == 12  # thresholds 0 .. 0.55
    assert summary['auc'] == pytest.approx(passing / 21)
    assert (summary['op50'], summary['op75']) == (1.0, 0.0)
    norm = np.hypot(3 / 40, 4 / 20)  # 0.2136: above 0.2, at most 0.22
    assert summary['norm_precision'] == 0.0
    assert summary['curves']['norm_precision'] == [0.0] * 22 + [1.0] * 29
    assert summary['norm_precision_auc'] == pytest.approx(
        np.mean(norm <= NORM_PRECISION_THRESHOLDS))


def test_absent_frames_and_the_first_frame_are_left_out():
    gt = moving_boxes(12)
    pred = gt.copy()
    absent = np.zeros(12, bool)
    absent[[4, 5, 6]] = True
    gt[[4, 5, 6]] = np.nan                # absent rows may hold anything
    pred[[0, 4, 5, 6]] = [0, 0, 500, 500]  # the tracker's boxes there are ignored
    summary = summarize([result('a', pred, gt, absent)])
    assert summary['frames'] == 8
    assert summary['ao'] == 1.0 and summary['op50'] == 1.0
    # Zero-size ground truth on a frame marked present is not a valid target either.
    gt[7] = [10, 10, 0, 5]
    assert summarize([result('a', pred, gt, absent)])['frames'] == 7


def test_sequences_weigh_the_same_and_fps_skips_initialisation():
    long_gt, short_gt = moving_boxes(11), moving_boxes(3)
    lost = short_gt + [300.0, 0.0, 0.0, 0.0]
    summary = summarize([
        result('long', long_gt.copy(), long_gt, seconds=np.r_[5.0, np.full(10, 0.01)]),
        result('short', lost, short_gt, seconds=np.r_[5.0, 0.02, 0.02])])
    assert summary['op50'] == pytest.approx(0.5)  # not 10 / 12: one mean per sequence
    assert summary['per_sequence']['short']['op50'] == 0.0
    assert summary['fps'] == pytest.approx(12 / 0.14)
    assert summary['sequences'] == 2 and summary['frames'] == 12


def test_no_evaluated_frame_gives_null_scores_as_json():
    gt = moving_boxes(3)
    summary = summarize([result('a', gt, gt, absent=np.array([False, True, True]))])
    assert summary['auc'] is None and summary['frames'] == 0
    json.dumps(summary, allow_nan=False)


def labelled(count: int, occluded) -> dict:
    labels = np.zeros((count, len(CHALLENGE_NAMES)))
    labels[:, NORMAL] = 1
    labels[occluded, OCCLUSION], labels[occluded, NORMAL] = 1, 0
    return {'labels': labels, 'judged': np.ones(labels.shape, bool)}


def test_per_attribute_auc_groups_frames_by_their_labels():
    gt = moving_boxes(9)
    pred = gt.copy()
    occluded = [2, 3, 5]
    pred[occluded] += [200.0, 0, 0, 0]
    extra = labelled(9, occluded)
    extra['judged'][5] = False  # not judged: in no group
    extra['labels'][8] = np.nan  # no record: in no group
    extra['judged'][8] = False
    attributes = summarize([result('a', pred, gt, **extra)])['attributes']
    assert attributes['occlusion'] == {'frames': 2, 'auc': 0.0, 'op50': 0.0}
    assert attributes['normal']['frames'] == 4  # 1, 4, 6, 7 (frame 0 is not evaluated)
    assert attributes['normal']['auc'] == pytest.approx(20 / 21)
    assert 'motion_blur' not in attributes


def test_known_confusion_gives_known_f1_and_the_normal_baseline():
    # Truth: frames 1-4 normal, 5-6 occlusion. Predicted: N N N O | O N.
    names = ('occlusion', 'normal')
    truth_occluded = [5, 6]
    predicted_occlusion = [4, 5]
    probabilities = np.full((7, 2), np.nan)  # frame 0: the tracker gives none
    for frame in range(1, 7):
        probabilities[frame] = [0.9, 0.1] if frame in predicted_occlusion else [0.2, 0.8]
    gt = moving_boxes(7)
    summary = summarize([result('a', gt.copy(), gt, probabilities=probabilities,
                                class_names=names, **labelled(7, truth_occluded))])
    metrics = summary['classification']
    assert metrics['head'] == 'single-label'
    assert metrics['confusion'] == [[1, 1], [1, 3]]
    # occlusion: TP 1, FP 1, FN 1 -> 2/4; normal: TP 3, FP 1, FN 1 -> 6/8.
    assert metrics['per_class_f1'] == {'occlusion': 0.5, 'normal': 0.75}
    assert metrics['macro_f1'] == pytest.approx(0.625)
    assert metrics['accuracy'] == pytest.approx(4 / 6)
    # Always 'normal': normal F1 = 8 / (8 + 2), occlusion 0.
    assert metrics['baseline']['per_class_f1'] == {'occlusion': 0.0, 'normal': 0.8}
    assert metrics['baseline']['macro_f1'] == pytest.approx(0.4)
    assert summarize([result('a', gt.copy(), gt)])['classification'] is None


def test_multi_label_head_counts_judged_entries():
    names = ('occlusion', 'low_resolution', 'normal')
    gt = moving_boxes(4)
    extra = labelled(4, [1, 2])
    low_res = CHALLENGE_NAMES.index('low_resolution')
    extra['labels'][2, low_res] = 1          # frame 2: occlusion and low resolution
    extra['judged'][3, low_res] = False      # frame 3: low resolution not judged
    probabilities = np.array([[np.nan] * 3,
                              [0.9, 0.7, 0.1],    # occlusion TP, low_res FP
                              [0.8, 0.2, 0.3],    # occlusion TP, low_res FN
                              [0.1, 0.9, 0.9]])   # low_res unjudged; normal TP
    metrics = summarize([result('a', gt.copy(), gt, probabilities=probabilities,
                                class_names=names, multi_label=True,
                                **extra)])['classification']
    assert metrics['head'] == 'multi-label'
    multi = metrics['multi_label']
    assert multi['per_class_f1'] == {'occlusion': 1.0, 'low_resolution': 0.0, 'normal': 1.0}
    assert multi['judged'] == {'occlusion': 3, 'low_resolution': 2, 'normal': 3}


def test_sequence_result_checks_shapes():
    gt = moving_boxes(3)
    with pytest.raises(ValueError, match='seconds has 2 rows for 3 frames'):
        SequenceResult('a', gt, gt, np.zeros(3, bool), np.zeros(2))
    with pytest.raises(ValueError, match='probabilities must be 3 x 2'):
        SequenceResult('a', gt, gt, np.zeros(3, bool), np.zeros(3),
                       probabilities=np.zeros((3, 3)), class_names=('occlusion', 'normal'))
