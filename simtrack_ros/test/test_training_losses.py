"""Training losses: class weights, pos_weight, GIoU/IoU, the joint loss and its masks."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn
import torch.nn.functional as F

from simtrack_ros.challenges import CHALLENGE_NAMES
from simtrack_ros.model.simtrack import box_xyxy_to_cxcywh
from simtrack_ros.training.losses import (
    box_cxcywh_to_xyxy, box_iou, class_weights, generalized_box_iou, giou_loss, LossWeights,
    positive_weights, SimTrackLoss)

N = len(CHALLENGE_NAMES)


def test_class_weights_follow_the_guide_formula_on_a_known_count():
    # total 10, 3 classes: 10/(3*6), 10/(3*3), 10/(3*1) = 5/9, 10/9, 30/9 (sum 45/9 = 5),
    # then * 3 / 5.
    weights = class_weights([6, 3, 1])
    assert weights.dtype == np.float32
    np.testing.assert_allclose(weights, [1 / 3, 2 / 3, 2.0], rtol=1e-6)
    assert weights.sum() == pytest.approx(3.0)
    np.testing.assert_allclose(class_weights([5, 5, 5, 5]), np.ones(4))


def test_a_class_without_samples_gets_weight_zero():
    # Present classes: 10/(4*6), 10/(4*3), 10/(4*1) = 5/12, 10/12, 30/12 (sum 45/12),
    # then * 4 / (45/12).
    weights = class_weights(np.array([6, 0, 3, 1]))
    np.testing.assert_allclose(weights, [4 / 9, 0.0, 8 / 9, 8 / 3], rtol=1e-6)
    assert np.isfinite(weights).all()
    assert weights.sum() == pytest.approx(4.0)


@pytest.mark.parametrize('counts, message', [
    ([0, 0, 0], 'all zero'), ([3, -1], 'non-negative'), ([[1, 2]], 'vector'), ([], 'vector'),
    ([1.0, float('nan')], 'finite')])
def test_class_weights_reject_unusable_counts(counts, message):
    with pytest.raises(ValueError, match=message):
        class_weights(counts)


def test_positive_weights_count_judged_entries_only():
    positives = np.array([[1, 0, 1, 0], [0, 0, 1, 1], [0, 1, 1, 0], [1, 0, 0, 0]])
    judged = np.array([[1, 1, 1, 1], [1, 1, 1, 0], [1, 0, 1, 0], [0, 1, 1, 0]])
    # class 0: judged rows 0-2: 1 positive, 2 negatives -> 2; class 1: judged rows 0, 1, 3:
    # no positive -> 1; class 2: 3 positives, 1 negative -> 1/3; class 3: only row 0 judged,
    # a negative -> 1.
    weights = positive_weights(positives, judged)
    assert weights.dtype == np.float32
    np.testing.assert_allclose(weights, [2.0, 1.0, 1 / 3, 1.0], rtol=1e-6)
    with pytest.raises(ValueError, match='N×C'):
        positive_weights(positives, judged[:, :3])


def test_cxcywh_to_xyxy_inverts_the_model_conversion():
    boxes = torch.tensor([[0.1, 0.2, 0.5, 0.9], [0.0, 0.0, 1.0, 1.0]])
    torch.testing.assert_close(box_cxcywh_to_xyxy(box_xyxy_to_cxcywh(boxes)), boxes)
    torch.testing.assert_close(box_cxcywh_to_xyxy(torch.tensor([0.5, 0.5, 0.2, 0.4])),
                               torch.tensor([0.4, 0.3, 0.6, 0.7]))


def test_giou_of_known_box_pairs():
    a = torch.tensor([[0.0, 0.0, 1.0, 1.0], [0.0, 0.0, 2.0, 2.0], [0.0, 0.0, 1.0, 1.0]])
    b = torch.tensor([[0.0, 0.0, 1.0, 1.0], [1.0, 1.0, 3.0, 3.0], [2.0, 0.0, 3.0, 1.0]])
    # identical; overlap 1, union 7, enclosing 9; disjoint: union 2, enclosing 3.
    torch.testing.assert_close(box_iou(a, b), torch.tensor([1.0, 1 / 7, 0.0]))
    torch.testing.assert_close(generalized_box_iou(a, b),
                               torch.tensor([1.0, 1 / 7 - 2 / 9, -1 / 3]))
    assert giou_loss(a[:1], b[:1]).item() == pytest.approx(0.0, abs=1e-6)
    assert giou_loss(a[2:], b[2:]).item() == pytest.approx(4 / 3)
    assert giou_loss(a, b).item() == pytest.approx((0 + 1 - (1 / 7 - 2 / 9) + 4 / 3) / 3)
    # Far apart boxes approach the bound 2.
    far = giou_loss(torch.tensor([[0.0, 0.0, 0.01, 0.01]]), torch.tensor([[0.99, 0.99, 1, 1]]))
    assert 1.99 < far.item() <= 2.0


@pytest.mark.parametrize('pred, target', [
    ([0.5, 0.5, 0.5, 0.5], [0.5, 0.5, 0.5, 0.5]),      # two identical points
    ([0.3, 0.3, 0.3, 0.6], [0.2, 0.2, 0.4, 0.4]),      # zero width
    ([0.6, 0.6, 0.2, 0.2], [0.2, 0.2, 0.4, 0.4]),      # inverted (x2 < x1, y2 < y1)
    ([0.5, 0.5, 0.5, 0.5], [0.1, 0.1, 0.2, 0.2]),      # a point outside the target
])
def test_degenerate_boxes_give_finite_losses_and_gradients(pred, target):
    pred = torch.tensor([pred], requires_grad=True)
    target = torch.tensor([target])
    loss = giou_loss(pred, target)
    loss.backward()
    assert torch.isfinite(loss) and 0.0 <= loss.item() <= 2.0
    assert torch.isfinite(pred.grad).all()
    assert 0.0 <= box_iou(pred.detach(), target).item() <= 1.0


def test_box_losses_pull_a_free_box_onto_its_target():
    target = torch.tensor([[0.55, 0.3, 0.8, 0.7]])
    params = torch.tensor([[0.2, 0.7, 0.1, 0.1]], requires_grad=True)   # cx, cy, w, h
    optimizer = torch.optim.Adam([params], lr=0.01)
    for _ in range(300):
        pred = box_cxcywh_to_xyxy(params)
        loss = 2 * giou_loss(pred, target) + 5 * F.l1_loss(pred, target)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert box_iou(box_cxcywh_to_xyxy(params.detach()), target).item() > 0.95


def batch_of(labels, multi=None, judged=None, has_label=None, boxes=None):
    batch = {'label': torch.tensor(labels)}
    if multi is not None:
        batch['multi_label'] = torch.tensor(multi, dtype=torch.float32)
        batch['judged'] = torch.tensor(judged, dtype=torch.float32)
    if has_label is not None:
        batch['has_label'] = torch.tensor(has_label)
    if boxes is not None:
        batch['search_box'] = torch.tensor(boxes)
    return batch


def test_joint_loss_is_the_weighted_sum_of_its_terms():
    torch.manual_seed(0)
    target = torch.tensor([[0.2, 0.2, 0.6, 0.7], [0.1, 0.3, 0.5, 0.4]])
    pred_xyxy = torch.tensor([[0.25, 0.1, 0.6, 0.8], [0.3, 0.3, 0.7, 0.5]])
    outputs = {'pred_boxes': box_xyxy_to_cxcywh(pred_xyxy).unsqueeze(1),
               'cls_logits': torch.randn(2, N)}
    batch = batch_of([3, 9], boxes=target.tolist())
    terms = SimTrackLoss()(outputs, batch)
    assert set(terms) == {'total', 'giou', 'l1', 'cls'}
    assert terms['giou'].item() == pytest.approx(giou_loss(pred_xyxy, target).item(), rel=1e-5)
    assert terms['l1'].item() == pytest.approx((pred_xyxy - target).abs().mean().item(), rel=1e-5)
    assert terms['cls'].item() == pytest.approx(
        F.cross_entropy(outputs['cls_logits'], batch['label']).item(), rel=1e-5)
    expected = 2 * terms['giou'] + 5 * terms['l1'] + terms['cls']
    assert terms['total'].item() == pytest.approx(expected.item(), rel=1e-6)

    weighted = SimTrackLoss(LossWeights(giou=1.0, l1=0.5, cls=3.0))(outputs, batch)
    expected = terms['giou'] + 0.5 * terms['l1'] + 3 * terms['cls']
    assert weighted['total'].item() == pytest.approx(expected.item(), rel=1e-6)


def test_perfect_boxes_cost_nothing_and_targets_are_clamped():
    target = torch.tensor([[-0.1, 0.2, 0.6, 1.3]])        # jittered crops can overhang
    outputs = {'pred_boxes': box_xyxy_to_cxcywh(target.clamp(0, 1)).unsqueeze(1)}
    terms = SimTrackLoss(train_cls=False)(outputs, batch_of([0], boxes=target.tolist()))
    assert set(terms) == {'total', 'giou', 'l1'}
    assert terms['total'].item() == pytest.approx(0.0, abs=1e-6)


def test_weighted_cross_entropy_matches_torch_and_skips_unlabelled_samples():
    torch.manual_seed(1)
    weights = class_weights(np.arange(1, N + 1))
    logits = torch.randn(5, N, requires_grad=True)
    labels = [0, 4, 9, 9, 2]
    loss = SimTrackLoss(class_weight=weights, train_box=False)
    terms = loss({'cls_logits': logits}, batch_of(labels, has_label=[1, 1, 1, 0, 1]))
    assert set(terms) == {'total', 'cls'}
    keep = [0, 1, 2, 4]
    reference = nn.CrossEntropyLoss(weight=torch.from_numpy(weights))(
        logits[keep], torch.tensor(labels)[keep])
    assert terms['cls'].item() == pytest.approx(reference.item(), rel=1e-5)
    terms['total'].backward()
    assert logits.grad[3].abs().sum().item() == 0.0
    assert logits.grad[keep].abs().sum().item() > 0.0


def test_unlabelled_rows_with_the_dataset_sentinel_label_are_skipped():
    """Rows without a record carry NO_LABEL (-100): no index error, no loss, no gradient."""
    logits = torch.randn(3, N, requires_grad=True)
    loss = SimTrackLoss(class_weight=class_weights(np.arange(1, N + 1)), train_box=False)
    terms = loss({'cls_logits': logits}, batch_of([2, -100, 5], has_label=[1, 0, 1]))
    reference = SimTrackLoss(class_weight=class_weights(np.arange(1, N + 1)), train_box=False)(
        {'cls_logits': logits[[0, 2]]}, batch_of([2, 5], has_label=[1, 1]))
    assert terms['cls'].item() == pytest.approx(reference['cls'].item(), rel=1e-6)
    terms['total'].backward()
    assert logits.grad[1].abs().sum().item() == 0.0


def test_a_batch_without_labels_costs_zero_but_keeps_the_graph():
    logits = torch.randn(2, N, requires_grad=True)
    terms = SimTrackLoss(train_box=False)({'cls_logits': logits},
                                          batch_of([1, 2], has_label=[False, False]))
    assert terms['cls'].item() == 0.0
    terms['total'].backward()            # DDP needs every head in the graph
    assert torch.equal(logits.grad, torch.zeros_like(logits))


def test_multi_label_bce_uses_pos_weight_on_judged_entries_only():
    torch.manual_seed(2)
    multi = torch.randint(0, 2, (4, N)).float()
    judged = torch.ones(4, N)
    judged[0, :5] = 0
    judged[2, 7] = 0
    pos_weight = torch.linspace(0.5, 3.0, N)
    logits = torch.randn(4, N, requires_grad=True)
    loss = SimTrackLoss(multi_label=True, pos_weight=pos_weight.numpy(), train_box=False)
    terms = loss({'cls_logits': logits}, batch_of([0] * 4, multi.tolist(), judged.tolist()))
    per_entry = F.binary_cross_entropy_with_logits(logits, multi, pos_weight=pos_weight,
                                                   reduction='none')
    expected = per_entry[judged.bool()].mean()
    assert terms['cls'].item() == pytest.approx(expected.item(), rel=1e-5)
    terms['total'].backward()
    assert (logits.grad[~judged.bool()] == 0).all()
    assert (logits.grad[judged.bool()] != 0).all()

    changed = logits.detach().clone()
    changed[~judged.bool()] = 50.0        # anything at unjudged entries
    again = loss({'cls_logits': changed}, batch_of([0] * 4, multi.tolist(), judged.tolist()))
    assert again['cls'].item() == pytest.approx(terms['cls'].item(), rel=1e-6)


def test_low_precision_logits_give_a_float32_loss():
    logits = torch.randn(3, N).to(torch.bfloat16)
    terms = SimTrackLoss(train_box=False)({'cls_logits': logits}, batch_of([0, 1, 2]))
    assert terms['total'].dtype == torch.float32
    reference = F.cross_entropy(logits.float(), torch.tensor([0, 1, 2]))
    assert terms['cls'].item() == pytest.approx(reference.item(), rel=1e-6)


def test_loss_configuration_errors_are_clear():
    with pytest.raises(ValueError, match='train_box or train_cls'):
        SimTrackLoss(train_box=False, train_cls=False)
    with pytest.raises(ValueError, match='pos_weight'):
        SimTrackLoss(multi_label=True, class_weight=np.ones(N))
    with pytest.raises(ValueError, match='class_weight'):
        SimTrackLoss(pos_weight=np.ones(N))


def test_weights_follow_the_module_to_another_dtype_and_device():
    loss = SimTrackLoss(class_weight=np.ones(N), train_box=False).to(torch.float64)
    assert loss.class_weight.dtype == torch.float64
    assert 'class_weight' not in loss.state_dict()
