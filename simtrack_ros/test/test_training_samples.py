"""Training samples: loading, the split by sequence, crops equal to the tracker's, augmentation."""
from __future__ import annotations

import logging
import pickle
from typing import Dict, List, Optional

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader
from tracking_standin import StandInModel, textured_frame

from simtrack_ros.challenges import CHALLENGE_NAMES, DEFAULT_PRIORITY
from simtrack_ros.data.annotations import AnnotationWriter, Flag, FrameRecord
from simtrack_ros.data.sequences import write_sequence
from simtrack_ros.tracking import EngineOptions, Tracker, TrackerOptions
from simtrack_ros.tracking.crop import map_box_back
from simtrack_ros.tracking.preprocess import IMAGENET_MEAN, IMAGENET_STD, PIXEL_MAX
from simtrack_ros.training.augment import Augment, flip_box
from simtrack_ros.training.samples import (
    ClassificationDataset, CropSettings, jitter_box, load_annotated, NO_LABEL, search_crop,
    split_by_sequence, TrackingPairDataset)

HEIGHT, WIDTH = 120, 160
SIZE = 24                      # target side (pixels)
LEFT, RIGHT = (255, 0, 0), (0, 0, 255)
CROPS = CropSettings()         # the tiny model's 112 / 224
NO_JITTER = CropSettings(center_jitter=0.0, scale_jitter=0.0)
FLIP_ONLY = Augment(flip_prob=1.0, brightness=0.0, contrast=0.0, grayscale_prob=0.0)
NO_CHANGE = Augment(flip_prob=0.0, brightness=0.0, contrast=0.0, grayscale_prob=0.0)


def target_frame(box, seed: int) -> np.ndarray:
    """Textured frame with a target: left half pure red, right half pure blue."""
    frame = textured_frame(HEIGHT, WIDTH, seed)
    frame[..., 2] = frame[..., 2] % 150
    x, y, w, h = (int(v) for v in box)
    frame[y:y + h, x:x + w // 2] = LEFT
    frame[y:y + h, x + w // 2:x + w] = RIGHT
    return frame


def flags_for(index: int) -> Dict[str, Flag]:
    """Frame flags cycling through a few label patterns (every class judged)."""
    active = {0: (), 1: ('occlusion',), 2: ('motion_blur', 'scale_variation')}[index % 3]
    return {name: Flag(name in active, 'synthetic') for name in CHALLENGE_NAMES
            if name != 'normal'}


def make_sequence(folder, name: str, frames: int = 12, absent=(), annotate=None,
                  seed: int = 0):
    """Write a moving-target sequence (PNG) and its annotations.jsonl."""
    boxes = np.array([[20 + 7 * i % 100, 30 + 3 * i % 50, SIZE, SIZE - 6]
                      for i in range(frames)], np.float64)
    absent_flags = np.zeros(frames, np.int64)
    for i in absent:
        absent_flags[i] = 1
        boxes[i] = 0
    images = [target_frame(box, seed + i) if not absent_flags[i] else textured_frame(
        HEIGHT, WIDTH, seed + i) for i, box in enumerate(boxes)]
    sequence = write_sequence(folder / name, images, boxes, absent=absent_flags,
                              image_format='png')
    template = boxes[int(np.argmin(absent_flags))]
    with AnnotationWriter(folder / name / 'annotations.jsonl') as writer:
        for i in (range(frames) if annotate is None else annotate):
            box = boxes[i]
            writer.write(FrameRecord(
                sequence_name=name, frame_file=sequence.frame_files[i].name, frame_index=i,
                template_bbox=(*template[:2], *(template[:2] + template[2:])),
                ground_truth_bbox=None if absent_flags[i] else (*box[:2], *(box[:2] + box[2:])),
                flags=flags_for(i)))
    return sequence


@pytest.fixture(scope='module')
def dataset_root(tmp_path_factory):
    root = tmp_path_factory.mktemp('annotated')
    make_sequence(root, 'boat-1', frames=12, absent=(5, 6))
    make_sequence(root, 'boat-2', frames=9, annotate=range(0, 9, 2), seed=50)
    make_sequence(root, 'buoy-10', frames=6, absent=(0,), seed=90)
    return root


def pixels(tensor: torch.Tensor) -> np.ndarray:
    """Normalised 3 x S x S model input back to H x W x 3 pixel levels."""
    mean = torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(3, 1, 1)
    return ((tensor * std + mean) * PIXEL_MAX).round().permute(1, 2, 0).numpy()


def colour_box(image: np.ndarray, colour) -> Optional[np.ndarray]:
    """Pixel xyxy bounds of the pixels close to ``colour``."""
    mask = (np.abs(image - np.array(colour)) < 60).all(axis=2)
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    if not len(rows):
        return None
    return np.array([cols[0], rows[0], cols[-1] + 1, rows[-1] + 1], np.float64)


def target_box(image: np.ndarray) -> np.ndarray:
    left, right = colour_box(image, LEFT), colour_box(image, RIGHT)
    return np.concatenate([np.minimum(left[:2], right[:2]), np.maximum(left[2:], right[2:])])


# ---------------------------------------------------------------- loading and splitting


def test_load_annotated_reads_sequences_and_records(dataset_root):
    items = load_annotated(dataset_root)
    assert [item.name for item in items] == ['boat-1', 'boat-2', 'buoy-10']
    assert sorted(items[1].records) == [0, 2, 4, 6, 8]
    assert items[0].records[4].active() == ('occlusion',)
    assert all(item.split is None for item in items)


def test_load_annotated_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match='no such dataset folder'):
        load_annotated(tmp_path / 'missing')
    (tmp_path / 'empty').mkdir()
    with pytest.raises(ValueError, match='no sequences found'):
        load_annotated(tmp_path / 'empty')
    bare = tmp_path / 'bare'
    write_sequence(bare / 'seq', [textured_frame(HEIGHT, WIDTH)], [[10, 10, 20, 20]])
    with pytest.raises(FileNotFoundError, match='simtrack-annotate'):
        load_annotated(bare)
    (item,) = load_annotated(bare, require_records=False)
    assert item.records == {}


def test_records_that_do_not_fit_the_sequence_are_refused(tmp_path):
    sequence = make_sequence(tmp_path / 'a', 'seq', frames=3, annotate=())
    record = {'sequence_name': 'seq', 'frame_file': '00000003.png', 'frame_index': 2,
              'template_bbox': (1, 1, 5, 5), 'flags': {}}
    with AnnotationWriter(sequence.path / 'annotations.jsonl') as writer:
        writer.write(FrameRecord(**{**record, 'frame_index': 1}))
    with pytest.raises(ValueError, match="frame_index 1 names '00000003.png'"):
        load_annotated(tmp_path / 'a')
    sequence = make_sequence(tmp_path / 'b', 'seq', frames=3, annotate=())
    with AnnotationWriter(sequence.path / 'annotations.jsonl') as writer:
        writer.write(FrameRecord(**{**record, 'frame_index': 7}))
    with pytest.raises(ValueError, match='frame_index 7 but seq has 3 frames'):
        load_annotated(tmp_path / 'b')


def test_bad_annotation_lines_are_logged_and_skipped(tmp_path, caplog):
    sequence = make_sequence(tmp_path, 'seq', frames=3)
    with open(sequence.path / 'annotations.jsonl', 'a', encoding='utf-8') as file:
        file.write('{not json\n')
    with caplog.at_level(logging.WARNING):
        (item,) = load_annotated(tmp_path)
    assert sorted(item.records) == [0, 1, 2]
    assert 'annotations.jsonl:4: invalid JSON' in caplog.text


def test_split_by_sequence_never_leaks_and_is_deterministic(tmp_path):
    names = [f'seq-{i}' for i in range(10)]
    for i, name in enumerate(names):
        make_sequence(tmp_path, name, frames=2, seed=i)
    items = load_annotated(tmp_path)
    train, val = split_by_sequence(items, 0.3, seed=3)
    train_names, val_names = {i.name for i in train}, {i.name for i in val}
    assert not train_names & val_names and train_names | val_names == set(names)
    assert len(val_names) == 3
    again = split_by_sequence(list(reversed(items)), 0.3, seed=3)
    assert {i.name for i in again[1]} == val_names
    others = {frozenset(i.name for i in split_by_sequence(items, 0.3, seed=s)[1])
              for s in range(8)}
    assert len(others) > 1
    # a name held twice (two folders) lands on one side with all its frames
    doubled = items + load_annotated(tmp_path)
    for seed in range(5):
        train, val = split_by_sequence(doubled, 0.3, seed)
        assert not {i.name for i in train} & {i.name for i in val}
        assert len(train) + len(val) == 20
    assert split_by_sequence(items[:2], 0.01, 0)[1] and split_by_sequence(items[:2], 0.9, 0)[0]
    assert split_by_sequence(items, 0.0, 0) == (items, [])
    with pytest.raises(ValueError, match='val_split'):
        split_by_sequence(items, 1.0, 0)


def test_dataset_split_folders_are_used(tmp_path):
    for split, names in (('train', ('a', 'b', 'c')), ('val', ('d',)), ('test', ('e',))):
        for name in names:
            make_sequence(tmp_path / split, name, frames=2)
    items = load_annotated(tmp_path)
    assert [(i.name, i.split) for i in items] == [
        ('a', 'train'), ('b', 'train'), ('c', 'train'), ('d', 'val')]
    for seed in range(3):
        train, val = split_by_sequence(items, 0.5, seed)
        assert [i.name for i in train] == ['a', 'b', 'c'] and [i.name for i in val] == ['d']
    only_train = load_annotated(tmp_path, split='train')
    assert {i.split for i in only_train} == {'train'}
    train, val = split_by_sequence(only_train, 0.34, 0)
    assert len(val) == 1 and len(train) == 2


# ---------------------------------------------------------------- the tracker's own pixels


def tracker_inputs(frame_t, box_t, frame_s, box_s):
    """Return the template, template_anno and search tensors the Tracker builds."""
    tracker = Tracker(StandInModel(), TrackerOptions(engine=EngineOptions(device='cpu')))
    seen: Dict[str, List[torch.Tensor]] = {'template': [], 'anno': [], 'search': []}
    encode, run = tracker.engine.encode_template, tracker.engine.run

    def capture_template(template, anno):
        seen['template'].append(template.clone())
        seen['anno'].append(anno.clone())
        return encode(template, anno)

    def capture_search(tokens, search, **kwargs):
        seen['search'].append(search.clone())
        return run(tokens, search, **kwargs)

    tracker.engine.encode_template = capture_template
    tracker.engine.run = capture_search
    tracker.initialize(frame_t, box_t, 'template')
    tracker.initialize(frame_s, box_s, 'search')       # its search crop follows box_s
    tracker.track(frame_s)
    return seen['template'][0][0], seen['anno'][0][0], seen['search'][0][1]


def test_classification_sample_equals_tracker_inputs(dataset_root):
    items = load_annotated(dataset_root)
    dataset = ClassificationDataset(items, CROPS)
    sequence = items[0].sequence
    for index in (3, 9):
        sample = dataset[index]
        assert sample['sequence'] == 'boat-1'
        frame_index = sample['frame_index']
        template, anno, search = tracker_inputs(
            sequence.frame(0), tuple(sequence.boxes[0]), sequence.frame(frame_index),
            tuple(sequence.boxes[frame_index]))
        assert sample['template'].dtype == torch.float32
        assert torch.equal(sample['template'], template)
        assert torch.equal(sample['template_anno'], anno)
        assert torch.equal(sample['search'], search)
        # the tracker maps the search box back onto the frame's box
        x1, y1, x2, y2 = sample['search_box'].tolist()
        side = np.ceil(np.sqrt(SIZE * (SIZE - 6)) * CROPS.search_factor)
        back = map_box_back(((x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1),
                            sequence.boxes[frame_index], CROPS.search_size / side,
                            CROPS.search_size)
        np.testing.assert_allclose(back, sequence.boxes[frame_index], atol=1e-4)


def test_jittered_search_box_maps_back_to_the_true_box():
    rng = np.random.default_rng(0)
    frame = target_frame((60, 40, SIZE, SIZE), 0)
    box = (60.0, 40.0, float(SIZE), float(SIZE))
    for _ in range(50):
        reference = jitter_box(box, CROPS, rng)
        crop, xyxy = search_crop(frame, box, reference, CROPS)
        side = np.ceil(np.sqrt(reference[2] * reference[3]) * CROPS.search_factor)
        assert crop.shape == (224, 224, 3) and xyxy.dtype == np.float32
        assert ((0 <= xyxy) & (xyxy <= 1)).all()
        if 0 < xyxy.min() and xyxy.max() < 1:
            cxcywh = ((xyxy[0] + xyxy[2]) / 2, (xyxy[1] + xyxy[3]) / 2, xyxy[2] - xyxy[0],
                      xyxy[3] - xyxy[1])
            back = map_box_back(cxcywh, reference, CROPS.search_size / side, CROPS.search_size)
            np.testing.assert_allclose(back, box, atol=1e-3)


def test_jitter_follows_starks_formula():
    rng = np.random.default_rng(1)
    box = (100.0, 50.0, 40.0, 10.0)
    draws = np.array([jitter_box(box, CROPS, rng) for _ in range(4000)])
    log_scale = np.log(draws[:, 2:] / np.array(box[2:]))
    np.testing.assert_allclose(log_scale.std(axis=0), CROPS.scale_jitter, rtol=0.05)
    np.testing.assert_allclose(log_scale.mean(axis=0), 0, atol=0.03)
    offset = (draws[:, :2] + draws[:, 2:] / 2) - np.array([120.0, 55.0])
    relative = offset / np.sqrt(draws[:, 2] * draws[:, 3])[:, None]
    assert np.abs(relative).max() <= CROPS.center_jitter / 2
    assert np.abs(relative).max() > 0.95 * CROPS.center_jitter / 2
    assert jitter_box(box, NO_JITTER, rng) == box


# ---------------------------------------------------------------- augmentation


def test_flip_moves_image_and_box_together(dataset_root):
    items = load_annotated(dataset_root)
    plain = ClassificationDataset(items, NO_JITTER, augment=NO_CHANGE)
    flipped = ClassificationDataset(items, NO_JITTER, augment=FLIP_ONLY)
    for index in (0, 4, 11):
        a, b = plain[index], flipped[index]
        assert torch.equal(b['search'], a['search'].flip(-1))
        assert torch.equal(b['template'], a['template'].flip(-1))
        assert torch.equal(b['template_anno'], a['template_anno'])
        assert torch.equal(b['search_box'], torch.from_numpy(flip_box(a['search_box'].numpy())))
        image = pixels(b['search'])
        measured = target_box(image) / CROPS.search_size
        np.testing.assert_allclose(b['search_box'].numpy(), measured, atol=2.5 / 224)
        # mirrored: the left (red) half is now on the right
        assert colour_box(image, LEFT)[0] > colour_box(image, RIGHT)[0]


def test_jittered_pair_box_matches_the_crop(dataset_root):
    dataset = TrackingPairDataset(load_annotated(dataset_root), CROPS, samples_per_epoch=40,
                                  augment=FLIP_ONLY, seed=4)
    checked = 0
    for index in range(len(dataset)):
        sample = dataset[index]
        box = sample['search_box'].numpy()
        assert ((0 <= box) & (box <= 1)).all()
        image = pixels(sample['search'])
        if 0.02 < box.min() and box.max() < 0.98 and (box[2:] - box[:2]).min() > 0.1:
            np.testing.assert_allclose(box, target_box(image) / CROPS.search_size,
                                       atol=3 / 224)
            assert colour_box(image, LEFT)[0] > colour_box(image, RIGHT)[0]
            checked += 1
    assert checked >= 10


def test_augment_operations():
    crop = target_frame((40, 40, SIZE, SIZE), 3)[:64, :64]
    box = np.array([0.1, 0.2, 0.5, 0.6], np.float32)
    rng = np.random.default_rng(0)
    grey = Augment(flip_prob=0, brightness=0, contrast=0, grayscale_prob=1)
    out, _, out_box = grey(crop, crop, box, rng)
    assert (out[..., 0] == out[..., 1]).all() and (out[..., 1] == out[..., 2]).all()
    assert np.array_equal(out_box, box)
    dark = Augment(flip_prob=0, brightness=0.5, contrast=0, grayscale_prob=0)
    ratios = [dark(crop, crop, box, np.random.default_rng(s))[0].astype(float).sum()
              / crop.astype(float).sum() for s in range(40)]
    assert 0.45 < min(ratios) < 0.65 and 1.2 < max(ratios) < 1.5
    blur = Augment(flip_prob=0, brightness=0, contrast=0, grayscale_prob=0, blur_prob=1,
                   blur_sigma=(1.5, 2.0))
    blurred = blur(crop, crop, box, rng)[0]
    assert blurred.dtype == np.uint8 and blurred.shape == crop.shape
    assert np.abs(np.diff(blurred.astype(float), axis=1)).mean() \
        < 0.5 * np.abs(np.diff(crop.astype(float), axis=1)).mean()
    flips = sum(Augment().draw(np.random.default_rng(s)).flip for s in range(400))
    greys = sum(Augment().draw(np.random.default_rng(s)).grayscale for s in range(2000))
    assert 160 < flips < 240 and 60 < greys < 150
    for bad in ({'flip_prob': 1.5}, {'brightness': -1}, {'blur_sigma': (0, 1)}):
        with pytest.raises(ValueError):
            Augment(**bad)


def test_samples_are_deterministic_per_seed_epoch_index(dataset_root):
    items = load_annotated(dataset_root)
    augment = Augment(blur_prob=0.5)
    first = TrackingPairDataset(items, CROPS, 16, augment=augment, seed=7)
    second = TrackingPairDataset(items, CROPS, 16, augment=augment, seed=7)
    for index in (0, 5, 15):
        a, b = first[index], second[index]
        assert all(torch.equal(a[k], b[k]) for k in ('template', 'search', 'search_box'))
    second.set_epoch(1)
    assert [first.pair(i) for i in range(16)] != [second.pair(i) for i in range(16)]
    second.set_epoch(0)
    assert torch.equal(first[3]['search'], second[3]['search'])
    other_seed = TrackingPairDataset(items, CROPS, 16, augment=augment, seed=8)
    assert [first.pair(i) for i in range(16)] != [other_seed.pair(i) for i in range(16)]
    classification = ClassificationDataset(items, CROPS, augment=augment, seed=7)
    before = classification[2]['search']
    assert torch.equal(before, classification[2]['search'])
    classification.set_epoch(1)
    assert not torch.equal(before, classification[2]['search'])


# ---------------------------------------------------------------- dataset contents


def test_classification_dataset_samples_and_labels(dataset_root):
    items = load_annotated(dataset_root)
    dataset = ClassificationDataset(items, CROPS)
    # boat-1: 12 frames, 5 and 6 absent; boat-2: every other frame annotated; buoy-10: 0 absent
    expected = ([('boat-1', i) for i in range(12) if i not in (5, 6)]
                + [('boat-2', i) for i in range(0, 9, 2)] + [('buoy-10', i) for i in range(1, 6)])
    assert len(dataset) == len(expected)
    labels = dataset.labels()
    multi, judged = dataset.multi_labels(), dataset.judged_masks()
    assert labels.dtype == np.int64 and multi.shape == judged.shape == (len(expected), 10)
    assert multi.dtype == np.float32 and (judged == 1).all()
    for index, (name, frame_index) in enumerate(expected):
        sample = dataset[index]
        assert (sample['sequence'], sample['frame_index']) == (name, frame_index)
        record = items[[i.name for i in items].index(name)].records[frame_index]
        label = CHALLENGE_NAMES.index(record.single_label(DEFAULT_PRIORITY))
        assert sample['label'].item() == labels[index] == label
        assert sample['label'].dtype == torch.int64 and bool(sample['has_label'])
        assert torch.equal(sample['multi_label'], torch.from_numpy(multi[index]))
        assert torch.equal(sample['judged'], torch.from_numpy(judged[index]))
        assert sample['template'].shape == (3, 112, 112)
        assert sample['search'].shape == (3, 224, 224)
        assert sample['template_anno'].shape == sample['search_box'].shape == (4,)
    # frame 2 of boat-1: motion_blur + scale_variation; motion_blur wins by priority
    assert labels[2] == CHALLENGE_NAMES.index('motion_blur')
    assert labels[0] == CHALLENGE_NAMES.index('normal')
    priority = ('scale_variation',) + tuple(n for n in DEFAULT_PRIORITY if n != 'scale_variation')
    assert ClassificationDataset(items, CROPS, priority=priority).labels()[2] \
        == CHALLENGE_NAMES.index('scale_variation')


def test_max_samples_per_seq_and_template_frame(dataset_root):
    items = load_annotated(dataset_root)
    dataset = ClassificationDataset(items[:1], CROPS, max_samples_per_seq=4)
    frames = [dataset[i]['frame_index'] for i in range(len(dataset))]
    assert frames == [0, 3, 8, 11]
    chosen = ClassificationDataset(items[:1], CROPS, template_frame=4)
    sequence = items[0].sequence
    template, anno, _ = tracker_inputs(sequence.frame(4), tuple(sequence.boxes[4]),
                                       sequence.frame(0), tuple(sequence.boxes[0]))
    assert torch.equal(chosen[0]['template'], template)
    with pytest.raises(ValueError, match='template frame 5 has no usable box'):
        ClassificationDataset(items[:1], CROPS, template_frame=5)
    with pytest.raises(ValueError, match='no annotated frame'):
        ClassificationDataset(load_annotated(dataset_root, require_records=False)[:0], CROPS)


def test_tracking_pairs_are_causal_within_max_gap(dataset_root):
    items = load_annotated(dataset_root)
    dataset = TrackingPairDataset(items, CROPS, samples_per_epoch=300, max_gap=3, seed=1)
    absent = {('boat-1', 5), ('boat-1', 6), ('buoy-10', 0)}
    pairs = set()
    for index in range(len(dataset)):
        k, template, search = dataset.pair(index)
        name = items[k].name
        assert 0 < search - template <= 3
        assert (name, template) not in absent and (name, search) not in absent
        pairs.add((name, template, search))
    assert {name for name, _, _ in pairs} == {'boat-1', 'boat-2', 'buoy-10'}
    assert ('boat-1', 4, 7) in pairs        # across the absent frames
    labelled = [dataset[i] for i in range(30)]
    for sample in labelled:
        has = sample['frame_index'] in items[
            [i.name for i in items].index(sample['sequence'])].records
        assert bool(sample['has_label']) == has
        if not has:
            assert sample['label'].item() == NO_LABEL and not sample['judged'].any()
    unlabelled = TrackingPairDataset(items, CROPS, 10, with_labels=False)
    assert not any(bool(unlabelled[i]['has_label']) for i in range(10))
    with pytest.raises(IndexError):
        dataset[300]


def test_labelled_search_draws_annotated_search_frames(dataset_root):
    items = load_annotated(dataset_root)
    dataset = TrackingPairDataset(items, CROPS, 200, max_gap=2, labelled_search=True)
    pairs = {(items[k].name, t, s) for k, t, s in map(dataset.pair, range(200))}
    assert all(s in items[[i.name for i in items].index(n)].records for n, _, s in pairs)
    assert all(0 < s - t <= 2 for _, t, s in pairs)
    boat_2 = {(t, s) for n, t, s in pairs if n == 'boat-2'}    # records on even frames only
    assert {s for _, s in boat_2} == {2, 4, 6, 8} and {t for t, _ in boat_2} == set(range(8))
    assert all(bool(dataset[i]['has_label']) for i in range(20))


def test_sequences_without_a_pair_are_left_out(tmp_path):
    make_sequence(tmp_path, 'single', frames=3, absent=(1, 2))
    make_sequence(tmp_path, 'gap', frames=8, absent=(1, 2, 3, 4, 5, 6))
    items = load_annotated(tmp_path)
    with pytest.raises(ValueError, match='no sequence has a visible frame with a visible frame'):
        TrackingPairDataset(items, CROPS, 5, max_gap=6)
    dataset = TrackingPairDataset(items, CROPS, 5, max_gap=7)
    assert {dataset.pair(i) for i in range(5)} == {(0, 0, 7)}    # 'gap' comes first


def test_datasets_pickle_and_run_in_dataloader_workers(dataset_root):
    items = load_annotated(dataset_root)
    pairs = TrackingPairDataset(items, CROPS, 8, augment=Augment(), seed=2)
    classification = ClassificationDataset(items, CROPS, augment=Augment(), seed=2)
    for dataset in (pairs, classification):
        dataset[0]                                      # fills its caches
        copy = pickle.loads(pickle.dumps(dataset))
        assert torch.equal(copy[1]['search'], dataset[1]['search'])
    loader = DataLoader(pairs, batch_size=4, num_workers=2)
    batches = list(loader)
    assert len(batches) == 2 and batches[0]['search'].shape == (4, 3, 224, 224)
    assert batches[0]['has_label'].dtype == torch.bool
    assert batches[1]['sequence'] == [pairs[i]['sequence'] for i in range(4, 8)]
    for i in range(8):
        assert torch.equal(batches[i // 4]['search'][i % 4], pairs[i]['search'])
