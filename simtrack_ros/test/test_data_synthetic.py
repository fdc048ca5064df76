"""Synthetic datasets: determinism, labels that agree with the rendered pixels, read-back, CLI.

Same seed, same bytes; every label checked against pixels the test measures itself; the files
read back with the sequence and annotation readers; the command line in a subprocess.
"""
from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path
import subprocess
import sys

import cv2
import numpy as np
import pytest

from simtrack_ros.challenges import CHALLENGE_NAMES, NORMAL
from simtrack_ros.data.annotations import read_annotations
from simtrack_ros.data.dataset_labels import low_resolution, scale_variation
from simtrack_ros.data.sequences import LIST_FILE, list_sequences, read_dataset
from simtrack_ros.data.synthetic_dataset import (
    ANNOTATION_FILE, generate_dataset, SCENE_FILE, sequence_seed, SynthOptions)
from simtrack_ros.data.synthetic_plan import build_plan, parse_mix, VARIANTS
from simtrack_ros.data.synthetic_scene import LabelRules, SceneRenderer

WIDTH, HEIGHT = 320, 180
RULES = LabelRules()


def _files(root: Path) -> dict:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob('*'))
            if p.is_file()}


def _target_change(renderer: SceneRenderer, index: int) -> np.ndarray:
    """How much each pixel changes when the target is drawn (sum over RGB), from pixels only."""
    image, _ = renderer.render(index)
    without, _ = renderer.render(index, draw_target=False)
    return np.abs(image.astype(np.int32) - without.astype(np.int32)).sum(axis=2)


def _target_pixels(renderer: SceneRenderer, index: int) -> np.ndarray:
    """Return the target's visible footprint: pixels that change when it is drawn."""
    return _target_change(renderer, index) > 6


def _luma(image: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(image, cv2.COLOR_RGB2GRAY).astype(np.float64)


def _inner_and_ring(image: np.ndarray, box) -> tuple:
    """Return the luminance inside the box and in the ring around it (box grown by half)."""
    x, y, w, h = (int(round(v)) for v in box)
    luma = _luma(image)
    x0, y0 = max(x - w // 2, 0), max(y - h // 2, 0)
    x1, y1 = min(x + w + w // 2, image.shape[1]), min(y + h + h // 2, image.shape[0])
    ring = np.ones((y1 - y0, x1 - x0), bool)
    ring[y - y0:y - y0 + h, x - x0:x - x0 + w] = False
    return luma[y:y + h, x:x + w], luma[y0:y1, x0:x1][ring]


def test_same_seed_writes_the_same_bytes_whatever_the_workers(tmp_path):
    options = SynthOptions(width=WIDTH, height=HEIGHT, frames=6)
    generate_dataset(tmp_path / 'a', {'': 2}, options, seed=3, workers=1, progress=False)
    generate_dataset(tmp_path / 'b', {'': 2}, options, seed=3, workers=2, progress=False)
    generate_dataset(tmp_path / 'c', {'': 2}, options, seed=4, workers=1, progress=False)
    first, again, other = (_files(tmp_path / name) for name in 'abc')
    assert len(first) == 2 * (6 + 6) + 1      # frames, 6 text files per sequence, list.txt
    assert first == again
    frames = [name for name in first if name.endswith('.jpg')]
    assert all(first[name] != other[name] for name in frames)


def test_splits_get_lists_and_never_share_a_seed(tmp_path):
    counts = {'train': 2, 'val': 1, 'test': 1}
    generate_dataset(tmp_path, counts, SynthOptions(width=WIDTH, height=HEIGHT, frames=3),
                     seed=0, progress=False)
    seeds = {}
    for split, count in counts.items():
        listed = (tmp_path / split / LIST_FILE).read_text().split()
        assert [p.name for p in list_sequences(tmp_path, split)] == listed
        assert len(listed) == count
        seeds[split] = {json.loads((tmp_path / split / n / SCENE_FILE).read_text())['seed']
                        for n in listed}
    assert not seeds['train'] & seeds['val'] and not seeds['train'] & seeds['test']
    many = {split: {sequence_seed(0, split, i) for i in range(2000)} for split in counts}
    assert all(len(s) == 2000 for s in many.values())
    assert not many['train'] & many['val'] and not many['val'] & many['test']
    assert not many['train'] & many['test']


def test_written_dataset_reads_back_with_its_labels(tmp_path):
    options = SynthOptions(width=WIDTH, height=HEIGHT, frames=12, max_challenges=1,
                           mix=parse_mix('leave_frame,wave_crest,occluding_vessel,approach'))
    results = generate_dataset(tmp_path, {'': 4}, options, seed=11, progress=False)
    sequences = read_dataset(tmp_path)
    assert [s.name for s in sequences] == [r.path.name for r in results]
    for result, sequence in zip(results, sequences):
        read = read_annotations(sequence.path / ANNOTATION_FILE)
        assert read.errors == [] and len(read.records) == len(sequence) == 12
        assert sequence.frame(0).shape == (HEIGHT, WIDTH, 3)
        first = sequence.boxes[0]
        counts = dict.fromkeys(CHALLENGE_NAMES, 0)
        for index, record in enumerate(read.records):
            box = sequence.boxes[index]
            x1, y1, x2, y2 = record.ground_truth_bbox
            assert np.allclose(box, (x1, y1, x2 - x1, y2 - y1))
            assert np.allclose(record.template_bbox, (*first[:2], *(first[:2] + first[2:])))
            assert record.frame_index == index
            assert record.frame_file == sequence.frame_files[index].name
            assert set(record.flags) == set(CHALLENGE_NAMES) - {NORMAL}
            assert {flag.source for flag in record.flags.values()} == {'synthetic'}
            assert record.vlm_response is None and record.cv_response is None
            label = record.multi_label()
            assert label[CHALLENGE_NAMES.index(NORMAL)] == (not record.active())
            assert record.judged_mask().all()
            flags = {name: flag.flag for name, flag in record.flags.items()}
            assert sequence.cut_by_image[index] == flags['partial_visibility']
            assert sequence.cover[index] == math.floor(8 * record.visible_ratio + 0.5)
            assert sequence.absent[index] == (record.visible_ratio < RULES.absent_visible)
            assert flags['scale_variation'] == scale_variation(box, first)
            assert flags['low_resolution'] == low_resolution(box)
            for name in record.active() or (NORMAL,):
                counts[name] += 1
        assert counts == result.class_frames


def test_a_box_leaving_the_frame_is_partial_visibility():
    plan = build_plan(5, WIDTH, HEIGHT, 60, ['leave_frame'])
    renderer = SceneRenderer(plan)
    cut = inside = 0
    for index in range(0, 60, 2):
        _, truth = renderer.render(index)
        rows, cols = np.nonzero(_target_pixels(renderer, index))
        touches = (cols.min() == 0 or cols.max() == WIDTH - 1 or rows.min() == 0
                   or rows.max() == HEIGHT - 1)
        x, y, w, h = truth.box
        if truth.flags['partial_visibility']:
            assert touches and truth.cut_by_image, index
            assert x <= 0 or x + w >= WIDTH, index
            cut += 1
        if cols.min() >= 2 and cols.max() <= WIDTH - 3 and rows.min() >= 2:
            assert not truth.flags['partial_visibility'] and not truth.cut_by_image, index
            inside += 1
        if truth.geometry.outside >= 0.05:
            assert truth.flags['partial_visibility'], index
    assert cut >= 4 and inside >= 4


@pytest.mark.parametrize('variant, seed', [('wave_crest', 3), ('wave_crest', 7),
                                           ('occluding_vessel', 2), ('occluding_vessel', 5)])
def test_an_occluder_over_the_box_is_occlusion_with_its_visible_ratio(variant, seed):
    plan = build_plan(seed, WIDTH, HEIGHT, 60, [variant])
    # The other vessels' wakes lie on the water behind the target: without them the target's
    # background is the same with and without the occluders.
    plan.others = [dataclasses.replace(t, wake=np.zeros_like(t.wake)) for t in plan.others]
    clear = dataclasses.replace(plan, crest=np.zeros_like(plan.crest), others=[])
    renderer, unoccluded = SceneRenderer(plan), SceneRenderer(clear)
    occluded = free = 0
    for index in range(0, 60, 2):
        _, truth = renderer.render(index)
        if truth.geometry.outside > 0:
            continue
        # Behind an occluder a pixel's change is (1 - occluder coverage) times its change
        # without occluders: averaged over the pixels where the target clearly differs from
        # what is behind it, that fraction is the visible share.
        whole = _target_change(unoccluded, index)
        clear = whole > 24
        assert np.count_nonzero(clear) > 150, 'the target is big enough to count pixels'
        ratio = np.clip(_target_change(renderer, index)[clear] / whole[clear], 0, 1).mean()
        assert abs(ratio - truth.visible) < 0.05, (index, ratio, truth.visible)
        assert truth.cover == math.floor(8 * truth.visible + 0.5)
        if ratio < 0.85:
            assert truth.flags['occlusion'], (index, ratio)
            occluded += 1
        if ratio > 0.99:
            assert not truth.flags['occlusion'], (index, ratio)
            free += 1
        if ratio == 0:
            assert truth.absent and truth.cover == 0
    assert occluded >= 3 and free >= 3


def test_fog_lowers_the_measured_contrast():
    plan = build_plan(2, WIDTH, HEIGHT, 10, ['calm'])
    palette = dataclasses.replace(plan.palette, fog=0.9,
                                  fog_distance=float(plan.target.distance[0]) * 0.3)
    clear_image, clear = SceneRenderer(plan).render(5)
    fog_image, fog = SceneRenderer(dataclasses.replace(plan, palette=palette)).render(5)

    def contrast(image, box) -> float:
        inner, ring = _inner_and_ring(image, box)
        return abs(inner.mean() - ring.mean()) + inner.std()

    assert clear.box == fog.box
    assert contrast(fog_image, fog.box) < 0.5 * contrast(clear_image, clear.box)
    assert fog.contrast < 0.5 * clear.contrast
    assert fog.flags['low_contrast_object'] and not clear.flags['low_contrast_object']


def test_the_fog_variant_is_low_contrast_and_calm_is_normal():
    for variant, name in (('fog', 'low_contrast_object'), ('calm', NORMAL)):
        renderer = SceneRenderer(build_plan(1, WIDTH, HEIGHT, 40, [variant]))
        shown = [name in renderer.render(i)[1].active() for i in range(0, 40, 8)]
        assert all(shown), (variant, shown)


def test_motion_blur_label_matches_the_rendered_blur():
    plan = build_plan(4, WIDTH, HEIGHT, 60, ['camera_shake'])
    renderer = SceneRenderer(plan)
    sharp = SceneRenderer(dataclasses.replace(plan, exposure=0.0))
    blurred = 0
    for index in range(0, 60, 3):
        image, truth = renderer.render(index)
        x, y, w, h = (int(round(v)) for v in truth.box)
        crop = (slice(max(y, 0), y + h), slice(max(x, 0), x + w))
        variance = cv2.Laplacian(_luma(image)[crop], cv2.CV_64F).var()
        sharp_variance = cv2.Laplacian(_luma(sharp.render(index)[0])[crop], cv2.CV_64F).var()
        assert truth.flags['motion_blur'] == (truth.geometry.blur >= 0.01 * WIDTH)
        if truth.flags['motion_blur']:
            assert variance < 0.8 * sharp_variance, index
            blurred += 1
        elif truth.geometry.blur < 1.5:
            assert variance == pytest.approx(sharp_variance), index
    assert blurred >= 4


def test_illumination_change_label_matches_the_target_brightness():
    plan = build_plan(6, WIDTH, HEIGHT, 60, ['cloud'])
    renderer = SceneRenderer(plan)
    unlit = SceneRenderer(dataclasses.replace(plan, shadow=(0.0, 1.0, 1.0)))
    changed = steady = 0
    for index in range(0, 60, 3):
        image, truth = renderer.render(index)
        inner, _ = _inner_and_ring(image, truth.box)
        reference, _ = _inner_and_ring(unlit.render(index)[0], truth.box)
        change = abs(inner.mean() / reference.mean() - 1)
        if change > 0.3:
            assert truth.flags['illumination_change'], (index, change)
            changed += 1
        if change < 0.15:
            assert not truth.flags['illumination_change'], (index, change)
            steady += 1
    assert changed >= 3 and steady >= 3


def test_challenge_mix_names_classes_keys_and_variants(tmp_path):
    expected = {'occluding_vessel': 0.5, 'wave_crest': 0.5, 'fog': 2.0}
    assert parse_mix('occlusion,fog=2') == expected
    assert set(parse_mix('low_contrast')) == set(VARIANTS['low_contrast_object'])
    assert set(parse_mix('all')) == {v for vs in VARIANTS.values() for v in vs}
    for bad in ('nonsense', 'fog=0', 'fog=x', ''):
        with pytest.raises(ValueError):
            parse_mix(bad)
    options = SynthOptions(width=WIDTH, height=HEIGHT, frames=4, mix=parse_mix('fog'))
    results = generate_dataset(tmp_path, {'': 2}, options, progress=False)
    assert [r.variants for r in results] == [('fog',), ('fog',)]


def test_command_line_writes_a_small_dataset(tmp_path):
    output = tmp_path / 'synth'
    command = [sys.executable, '-m', 'simtrack_ros.data.synth_cli', str(output),
               '--sequences', '2', '--frames', '10', '--size', '160x96', '--workers', '2',
               '--seed', '5', '--no-progress']
    result = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert 'wrote 2 sequences, 20 frames of 160x96' in result.stdout
    sequences = read_dataset(output)
    assert [len(s) for s in sequences] == [10, 10]
    for sequence in sequences:
        assert len(read_annotations(sequence.path / ANNOTATION_FILE).records) == 10
        assert sequence.frame(9).shape == (96, 160, 3)
    again = subprocess.run(command[:-1], capture_output=True, text=True, timeout=300)
    assert again.returncode == 2 and again.stderr.count('\n') == 1, again.stderr
    assert again.stderr.startswith(f'simtrack-synth: error: {output} already holds a dataset')
    assert 'another folder' in again.stderr and again.stdout == ''
    for counts in (['--splits', 'train=1,test=0'], ['--sequences', '0']):
        empty = subprocess.run(command[:3] + [str(tmp_path / 'e')] + counts,
                               capture_output=True, text=True, timeout=300)
        assert empty.returncode == 2 and 'must be >= 1' in empty.stderr, empty.stderr
        assert not (tmp_path / 'e').exists()
    bad = subprocess.run(command[:3] + [str(tmp_path / 'x'), '--challenges', 'bogus'],
                         capture_output=True, text=True, timeout=300)
    assert bad.returncode == 2 and "unknown name 'bogus'" in bad.stderr
