"""Training metrics (hand-computed values, merging, a real 2-process gloo reduction) and plots."""
from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from simtrack_ros.challenges import CHALLENGE_NAMES
from simtrack_ros.training.metrics import BoxMeter, classification_report, ClassificationMeter
from simtrack_ros.training.plots import (
    metric_series, plot_confusion, plot_curves, row_normalised)

N = len(CHALLENGE_NAMES)
NORMAL, OCCLUSION, BLUR = (CHALLENGE_NAMES.index(n) for n in
                           ('normal', 'occlusion', 'motion_blur'))


def one_hot_scores(predicted):
    return torch.nn.functional.one_hot(torch.tensor(predicted), N).float() * 4.0 - 2.0


def test_single_label_metrics_and_the_always_normal_baseline():
    labels = [NORMAL, NORMAL, NORMAL, OCCLUSION, OCCLUSION, BLUR]
    predicted = [NORMAL, NORMAL, OCCLUSION, OCCLUSION, NORMAL, BLUR]
    meter = ClassificationMeter()
    meter.update(one_hot_scores(predicted[:4]), torch.tensor(labels[:4]))
    meter.update(one_hot_scores(predicted[4:]), torch.tensor(labels[4:]))
    m = meter.compute()
    assert m['samples'] == 6
    assert m['accuracy'] == pytest.approx(4 / 6)
    assert m['confusion'][NORMAL][NORMAL] == 2 and m['confusion'][NORMAL][OCCLUSION] == 1
    assert m['confusion'][OCCLUSION][NORMAL] == 1 and m['confusion'][OCCLUSION][OCCLUSION] == 1
    assert m['confusion'][BLUR][BLUR] == 1
    assert np.asarray(m['confusion']).sum() == 6
    assert m['support'] == {**dict.fromkeys(CHALLENGE_NAMES, 0), 'normal': 3, 'occlusion': 2,
                            'motion_blur': 1}
    assert m['per_class_accuracy']['normal'] == pytest.approx(2 / 3)
    assert m['per_class_accuracy']['occlusion'] == pytest.approx(1 / 2)
    assert m['per_class_accuracy']['low_resolution'] is None
    # F1 = 2TP / (2TP + FP + FN): normal 4/6, occlusion 2/4, motion blur 1.
    assert m['per_class_f1']['normal'] == pytest.approx(2 / 3)
    assert m['per_class_f1']['occlusion'] == pytest.approx(1 / 2)
    assert m['per_class_f1']['motion_blur'] == pytest.approx(1.0)
    assert m['per_class_f1']['scale_variation'] is None
    assert m['macro_f1'] == pytest.approx((2 / 3 + 1 / 2 + 1) / 3)

    base = m['baseline']
    assert base['accuracy'] == pytest.approx(3 / 6)
    # normal: TP 3, FP 3 -> 6/9; occlusion and motion blur never predicted -> 0.
    assert base['per_class_f1']['normal'] == pytest.approx(2 / 3)
    assert base['per_class_f1']['occlusion'] == 0.0
    assert base['macro_f1'] == pytest.approx((2 / 3) / 3)
    assert base['per_class_accuracy']['normal'] == 1.0
    assert base['per_class_accuracy']['occlusion'] == 0.0
    assert 'multi_label' not in m
    json.dumps(m, allow_nan=False)


def test_predicted_but_absent_classes_count_in_the_macro_f1():
    meter = ClassificationMeter()
    meter.update(one_hot_scores([NORMAL, BLUR]), torch.tensor([NORMAL, NORMAL]))
    m = meter.compute()
    assert m['per_class_f1']['motion_blur'] == 0.0
    assert m['macro_f1'] == pytest.approx((2 / 3 + 0) / 2)


def test_probabilities_rank_like_logits_and_unlabelled_rows_are_skipped():
    torch.manual_seed(0)
    logits = torch.randn(8, N)
    labels = torch.randint(0, N, (8,))
    has_label = torch.tensor([1, 0, 1, 1, 0, 1, 1, 1]).bool()
    by_logits, by_probs, kept = (ClassificationMeter() for _ in range(3))
    by_logits.update(logits, labels, has_label=has_label)
    by_probs.update(torch.softmax(logits, 1), labels, has_label=has_label, probabilities=True)
    kept.update(logits[has_label], labels[has_label])
    assert by_logits.compute() == by_probs.compute() == kept.compute()
    assert by_logits.compute()['samples'] == 6


def test_multi_label_f1_counts_judged_entries_only():
    meter = ClassificationMeter(multi_label=True)
    targets = torch.zeros(3, N)
    judged = torch.zeros(3, N)
    logits = torch.full((3, N), -3.0)
    # row 0: occlusion true and predicted; motion blur predicted, not true.
    targets[0, OCCLUSION] = 1
    logits[0, [OCCLUSION, BLUR]] = 3.0
    judged[0, [OCCLUSION, BLUR, NORMAL]] = 1
    # row 1: normal true and judged but predicted 'occlusion' only.
    targets[1, NORMAL] = 1
    logits[1, OCCLUSION] = 3.0
    judged[1] = 1
    # row 2: nothing judged; its wrong answers must not count.
    targets[2, BLUR] = 1
    logits[2, NORMAL] = 3.0
    meter.update(logits, torch.tensor([OCCLUSION, NORMAL, BLUR]), judged, multi_labels=targets)
    ml = meter.compute()['multi_label']
    # occlusion: TP 1, FP 1 -> 2/3; motion blur: FP 1 -> 0; normal: FN 1 -> 0.
    assert ml['per_class_f1']['occlusion'] == pytest.approx(2 / 3)
    assert ml['per_class_f1']['motion_blur'] == 0.0
    assert ml['per_class_f1']['normal'] == 0.0
    assert ml['per_class_f1']['low_resolution'] is None      # judged negative, never predicted
    assert ml['macro_f1'] == pytest.approx((2 / 3) / 3)
    assert ml['positives']['occlusion'] == 1 and ml['positives']['motion_blur'] == 0
    assert ml['judged']['normal'] == 2 and ml['judged']['low_resolution'] == 1
    # always-normal: normal TP 1 FP 1 -> 2/3; occlusion FN 1 -> 0.
    assert ml['baseline']['per_class_f1']['normal'] == pytest.approx(2 / 3)
    assert ml['baseline']['per_class_f1']['occlusion'] == 0.0
    assert ml['baseline']['macro_f1'] == pytest.approx((2 / 3) / 2)

    same = ClassificationMeter(multi_label=True)
    same.update(torch.sigmoid(logits), torch.tensor([OCCLUSION, NORMAL, BLUR]), judged,
                multi_labels=targets, probabilities=True)
    assert same.compute() == meter.compute()


def test_softmax_head_multi_label_f1_uses_the_arg_max_and_batches_are_read_by_key():
    meter = ClassificationMeter()
    targets = torch.zeros(2, N)
    targets[0, [OCCLUSION, BLUR]] = 1
    targets[1, NORMAL] = 1
    batch = {'label': torch.tensor([BLUR, NORMAL]), 'multi_label': targets,
             'judged': torch.ones(2, N), 'has_label': torch.tensor([True, True])}
    meter.update_from_batch(one_hot_scores([OCCLUSION, NORMAL]), batch)
    m = meter.compute()
    assert m['accuracy'] == 0.5
    assert m['multi_label']['per_class_f1']['occlusion'] == 1.0
    assert m['multi_label']['per_class_f1']['motion_blur'] == 0.0
    assert m['multi_label']['per_class_f1']['normal'] == 1.0


def test_bad_updates_are_rejected():
    meter = ClassificationMeter()
    with pytest.raises(ValueError, match='multi_labels='):
        meter.update(torch.zeros(2, N), torch.zeros(2, N))
    with pytest.raises(ValueError, match=f'B×{N}'):
        meter.update(torch.zeros(2, N - 1), torch.zeros(2, dtype=torch.long))
    with pytest.raises(ValueError, match='class ids in'):
        meter.update(torch.zeros(2, N), torch.tensor([0, N]))
    with pytest.raises(ValueError, match='judged needs'):
        meter.update(torch.zeros(2, N), torch.zeros(2, dtype=torch.long), torch.ones(2, N))
    with pytest.raises(ValueError, match='normal'):
        ClassificationMeter(class_names=('occlusion', 'motion_blur'))


def test_an_empty_meter_reports_undefined_values_as_null():
    m = ClassificationMeter().compute()
    assert m['samples'] == 0 and m['accuracy'] is None and m['macro_f1'] is None
    assert m['baseline']['accuracy'] is None
    assert BoxMeter().compute() == {'samples': 0, 'mean_iou': None, 'share_iou_50': None}
    json.loads(json.dumps(m, allow_nan=False))


def test_box_meter_mean_iou_and_success_share():
    meter = BoxMeter()
    target = torch.tensor([[0.0, 0.0, 1.0, 1.0], [0.0, 0.0, 2.0, 2.0], [0.0, 0.0, 1.0, 1.0]])
    pred = torch.tensor([[0.0, 0.0, 1.0, 1.0], [1.0, 1.0, 3.0, 3.0], [0.0, 0.0, 1.0, 0.6]])
    meter.update(pred[:2], target[:2])
    meter.update(pred[2:].unsqueeze(1), target[2:])
    m = meter.compute()
    assert m['samples'] == 3
    assert m['mean_iou'] == pytest.approx((1 + 1 / 7 + 0.6) / 3)
    assert m['share_iou_50'] == pytest.approx(2 / 3)


def random_batches(seed, count=4):
    generator = torch.Generator().manual_seed(seed)
    batches = []
    for _ in range(count):
        size = 5
        boxes = torch.rand(size, 2, 4, generator=generator).sort(dim=-1).values
        batches.append({
            'scores': torch.randn(size, N, generator=generator),
            'labels': torch.randint(0, N, (size,), generator=generator),
            'multi': torch.randint(0, 2, (size, N), generator=generator).float(),
            'judged': torch.randint(0, 2, (size, N), generator=generator).float(),
            'pred': boxes[:, 0][:, [0, 2, 1, 3]], 'target': boxes[:, 1][:, [0, 2, 1, 3]],
        })
    return batches


def fill(batches, multi_label=True):
    classes, boxes = ClassificationMeter(multi_label=multi_label), BoxMeter()
    for b in batches:
        classes.update(b['scores'], b['labels'], b['judged'], multi_labels=b['multi'])
        boxes.update(b['pred'], b['target'])
    return classes, boxes


def test_merged_meters_equal_one_meter_over_all_data():
    batches = random_batches(3, count=6)
    whole = fill(batches)
    first, second = fill(batches[:2]), fill(batches[2:])
    for part, other, total in zip(first, second, whole):
        part.merge(other)
        assert part.compute() == total.compute()
        assert all(torch.equal(a, b) for a, b in zip(part.state_tensors().values(),
                                                     total.state_tensors().values()))
    with pytest.raises(TypeError):
        first[0].merge(first[1])
    with pytest.raises(ValueError, match='shape'):
        first[1].load_state_tensors({**first[1].state_tensors(), 'count': torch.zeros(2)})


def test_all_reduce_without_a_process_group_changes_nothing():
    classes, boxes = fill(random_batches(4))
    before = classes.compute(), boxes.compute()
    classes.all_reduce()
    boxes.all_reduce()
    assert (classes.compute(), boxes.compute()) == before


def _reduce_on_rank(rank, world_size, init_file, out_dir):
    dist.init_process_group('gloo', init_method=f'file://{init_file}', rank=rank,
                            world_size=world_size)
    try:
        batches = random_batches(5, count=4)
        classes, boxes = fill(batches[rank::world_size])
        classes.all_reduce()
        boxes.all_reduce()
        result = {'classes': classes.compute(), 'boxes': boxes.compute()}
        Path(out_dir, f'rank{rank}.json').write_text(json.dumps(result))
    finally:
        dist.destroy_process_group()


def test_all_reduce_over_two_gloo_processes_gives_the_whole_dataset(tmp_path):
    mp.spawn(_reduce_on_rank, args=(2, str(tmp_path / 'init'), str(tmp_path)), nprocs=2,
             join=True)
    classes, boxes = fill(random_batches(5, count=4))
    expected = json.loads(json.dumps({'classes': classes.compute(), 'boxes': boxes.compute()}))
    for rank in range(2):
        assert json.loads((tmp_path / f'rank{rank}.json').read_text()) == expected
    assert expected['classes']['samples'] == 20 and expected['boxes']['samples'] == 20


def test_classification_report_lists_every_class_and_the_baseline():
    meter = ClassificationMeter()
    meter.update(one_hot_scores([NORMAL, OCCLUSION]), torch.tensor([NORMAL, NORMAL]))
    lines = classification_report(meter.compute()).splitlines()
    assert len(lines) == 1 + N + 2
    assert lines[0].split() == ['class', 'support', 'acc', 'F1', 'base']
    assert lines[1 + NORMAL].split() == ['normal', '2', '0.500', '0.667', '1.000']
    assert lines[1 + BLUR].split() == ['motion_blur', '0', '-', '-', '-']
    assert lines[-2].split() == ['accuracy', '2', '0.500', '1.000']
    assert lines[-1].split() == ['macro', 'F1', '0.333', '1.000']

    targets = torch.zeros(2, N)
    targets[:, NORMAL] = 1
    meter.update(one_hot_scores([NORMAL, NORMAL]), torch.tensor([NORMAL, NORMAL]),
                 torch.ones(2, N), multi_labels=targets)
    lines = classification_report(meter.compute()).splitlines()
    assert lines[0].split()[-2:] == ['mlF1', 'mlBase']
    assert lines[1 + NORMAL].split()[-2:] == ['1.000', '1.000']
    assert lines[-1].split()[-2:] == ['1.000', '1.000']


def png_shape(path):
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    assert image is not None, f'{path} is not a readable image'
    return image.shape


def write_metrics(path, rows):
    path.write_text(''.join(json.dumps(row) + '\n' for row in rows) + '\n')


def epoch_row(epoch, box=True, multi=False):
    train = {'loss': 2.0 / (epoch + 1), 'cls': 1.0 / (epoch + 1), 'accuracy': 0.2 + 0.1 * epoch,
             'macro_f1': 0.1 * epoch, 'samples_per_s': 50.0}
    val = {'loss': 2.2 / (epoch + 1), 'accuracy': 0.15 + 0.1 * epoch, 'macro_f1': None,
           'baseline': {'accuracy': 0.4, 'macro_f1': 0.06}}
    if multi:
        val['multi_label'] = {'macro_f1': 0.3 + 0.05 * epoch, 'baseline': {'macro_f1': 0.1}}
    if box:
        train.update(giou=0.5, l1=0.1)
        val.update(mean_iou=0.5 + 0.05 * epoch, share_iou_50=0.6)
    return {'epoch': epoch, 'train': train, 'val': val}


def test_curves_are_written_as_a_readable_png_with_one_panel_per_metric_group(tmp_path):
    joint, cls_only = tmp_path / 'joint.jsonl', tmp_path / 'cls.jsonl'
    write_metrics(joint, [epoch_row(e) for e in range(4)])
    write_metrics(cls_only, [epoch_row(e, box=False) for e in range(4)])
    out = plot_curves(joint, tmp_path / 'plots' / 'curves.png')
    assert out == tmp_path / 'plots' / 'curves.png'
    height, width, channels = png_shape(out)
    assert channels == 3 and height > 100
    # 6 inches per panel at 100 dpi: loss, classification, box.
    assert width == 1800
    assert png_shape(plot_curves(cls_only, tmp_path / 'cls.png'))[1] == 1200
    assert sorted(p.name for p in tmp_path.joinpath('plots').iterdir()) == ['curves.png']


def test_curve_series_follow_nested_keys_and_their_baselines():
    rows = [epoch_row(e, multi=e > 0) for e in range(3)]
    rows[1]['val']['accuracy'] = True          # not a number: skipped
    assert metric_series(rows, 'val', 'multi_label.macro_f1') == ([1, 2], [0.35, 0.4])
    assert metric_series(rows, 'val', 'multi_label.macro_f1', True) == ([1, 2], [0.1, 0.1])
    assert metric_series(rows, 'val', 'accuracy') == ([0, 2], [0.15, 0.35])
    assert metric_series(rows, 'val', 'accuracy', baseline=True) == ([0, 1, 2], [0.4] * 3)
    assert metric_series(rows, 'train', 'mean_iou') == ([], [])


def test_curves_of_an_unusable_file_raise(tmp_path):
    empty, broken = tmp_path / 'empty.jsonl', tmp_path / 'broken.jsonl'
    empty.write_text('\n')
    broken.write_text(json.dumps(epoch_row(0)) + '\n{"epoch": 1,\n')
    with pytest.raises(ValueError, match='no epochs'):
        plot_curves(empty, tmp_path / 'a.png')
    with pytest.raises(ValueError, match='broken.jsonl:2'):
        plot_curves(broken, tmp_path / 'b.png')
    assert sorted(p.name for p in tmp_path.iterdir()) == ['broken.jsonl', 'empty.jsonl']


def test_confusion_matrix_image_and_its_row_normalised_colours(tmp_path):
    meter = ClassificationMeter()
    meter.update(one_hot_scores([NORMAL, OCCLUSION, NORMAL]),
                 torch.tensor([NORMAL, NORMAL, OCCLUSION]))
    m = meter.compute()
    out = plot_confusion(m['confusion'], m['class_names'], tmp_path / 'confusion.png')
    height, width, _ = png_shape(out)
    assert height > 400 and width > 400
    shares = row_normalised([[3, 1], [0, 0]])
    np.testing.assert_allclose(shares, [[0.75, 0.25], [0.0, 0.0]])
    with pytest.raises(ValueError, match='10×10'):
        plot_confusion([[1, 2], [3, 4]], CHALLENGE_NAMES, tmp_path / 'bad.png')
