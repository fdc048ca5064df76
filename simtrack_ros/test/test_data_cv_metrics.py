"""CV metrics: each fires on a constructed positive and stays quiet on a negative."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from simtrack_ros.challenges import CHALLENGE_NAMES
from simtrack_ros.data.annotations import Flag
from simtrack_ros.data.cv_metrics import cv_response, CvJudge, CvOptions
from simtrack_ros.data.synthetic_sea import render_sea_frame

WIDTH, HEIGHT = 640, 360
SEEDS = (0, 1, 2)
JUDGE = CvJudge()
FORMULA_CLASSES = {'motion_blur', 'illumination_change', 'low_contrast_object',
                   'background_clutter', 'scale_variation', 'low_resolution'}


def _sea(t: float, seed: int):
    """Return an RGB sea frame and its boat's box."""
    frame, box = render_sea_frame(t, WIDTH, HEIGHT, seed)
    return np.ascontiguousarray(frame[..., ::-1]), box


def _pair(seed: int):
    """Return (frame, box, template, template box): the boat 3 s after the template."""
    template, template_box = _sea(0.0, seed)
    frame, box = _sea(3.0, seed)
    return frame, box, template, template_box


def _flagged(judgement, name):
    return judgement.flags[name].flag


def _target(box):
    x, y, w, h = (round(v) for v in box)
    return slice(y, y + h), slice(x, x + w)


@pytest.mark.parametrize('seed', SEEDS)
def test_plain_sea_frames_raise_no_flag(seed):
    frame, box, template, template_box = _pair(seed)
    judgement = JUDGE.judge(frame, box, template, template_box)
    assert set(judgement.flags) == FORMULA_CLASSES
    assert not any(flag.flag for flag in judgement.flags.values()), judgement
    assert all(flag.source == 'cv' and isinstance(flag, Flag) for flag in judgement.flags.values())


def test_template_against_itself_measures_no_change():
    template, template_box = _sea(0.0, 0)
    measured = JUDGE.judge(template, template_box, template, template_box).measurements
    assert measured['sharpness_ratio'] == pytest.approx(1.0)
    assert measured['frame_illumination_change'] == 0.0
    assert measured['target_illumination_change'] == 0.0
    assert measured['area_ratio'] == 1.0


@pytest.mark.parametrize('seed', SEEDS)
@pytest.mark.parametrize('blur', ['gaussian', 'horizontal', 'vertical', 'diagonal'])
def test_motion_blur_fires_on_a_blurred_target(seed, blur):
    frame, box, template, template_box = _pair(seed)
    kernel = {'horizontal': np.full((1, 9), 1 / 9), 'vertical': np.full((9, 1), 1 / 9),
              'diagonal': np.eye(7) / 7}.get(blur)
    blurred = (cv2.GaussianBlur(frame, (0, 0), 2.0) if kernel is None
               else cv2.filter2D(frame, -1, kernel.astype(np.float32)))
    sharp = JUDGE.judge(frame, box, template, template_box)
    judgement = JUDGE.judge(blurred, box, template, template_box)
    assert _flagged(judgement, 'motion_blur') and not _flagged(sharp, 'motion_blur')
    assert judgement.measurements['sharpness_ratio'] < 0.5 * sharp.measurements['sharpness_ratio']
    assert not _flagged(judgement, 'illumination_change')


@pytest.mark.parametrize('gain', [0.5, 1.6])
def test_illumination_change_fires_on_a_darker_or_brighter_frame(gain):
    frame, box, template, template_box = _pair(0)
    changed = np.clip(frame * gain, 0, 255).astype(np.uint8)
    judgement = JUDGE.judge(changed, box, template, template_box)
    assert _flagged(judgement, 'illumination_change')
    assert judgement.measurements['frame_illumination_change'] > 0.3
    assert judgement.measurements['target_illumination_change'] > 0.3
    assert not _flagged(judgement, 'motion_blur'), 'sharpness ignores a gain'


def test_illumination_change_fires_on_a_lit_target_in_an_unchanged_frame():
    frame, box, template, template_box = _pair(1)
    lit = frame.copy()
    region = _target(box)
    lit[region] = np.clip(lit[region] * 1.8 + 20, 0, 255).astype(np.uint8)
    judgement = JUDGE.judge(lit, box, template, template_box)
    assert judgement.measurements['frame_illumination_change'] < 0.3
    assert judgement.measurements['target_illumination_change'] > 0.4
    assert _flagged(judgement, 'illumination_change')


@pytest.mark.parametrize('seed', SEEDS)
def test_low_contrast_fires_on_a_target_of_the_sea_colour(seed):
    frame, box, template, template_box = _pair(seed)
    x, y, w, h = (round(v) for v in box)
    sea = np.concatenate([frame[y:y + h, x - w:x], frame[y:y + h, x + w:x + 2 * w]])
    camouflaged = frame.copy()
    # A hull of the surrounding sea's colour over the boat.
    cv2.ellipse(camouflaged, (x + w // 2, y + h // 2), (w // 2, h // 2), 0, 0, 360,
                sea.reshape(-1, 3).mean(axis=0).tolist(), -1, cv2.LINE_AA)
    judgement = JUDGE.judge(camouflaged, box, template, template_box)
    contrasting = JUDGE.judge(frame, box, template, template_box)
    assert _flagged(judgement, 'low_contrast_object'), judgement.measurements
    assert not _flagged(contrasting, 'low_contrast_object')
    assert contrasting.measurements['contrast'] > 2 * judgement.measurements['contrast']


@pytest.mark.parametrize('seed', SEEDS)
def test_fog_lowers_contrast_until_it_fires(seed):
    frame, box, template, template_box = _pair(seed)
    contrast = []
    for density in (0.0, 0.3, 0.6, 0.9):
        fog = (frame * (1 - density) + np.array([200.0, 205.0, 210.0]) * density)
        judgement = JUDGE.judge(fog.astype(np.uint8), box, template, template_box)
        contrast.append(judgement.measurements['contrast'])
    assert contrast == sorted(contrast, reverse=True), contrast
    assert not _flagged(JUDGE.judge(frame, box, template, template_box), 'low_contrast_object')
    assert _flagged(judgement, 'low_contrast_object'), contrast


@pytest.mark.parametrize('seed', SEEDS)
def test_background_clutter_fires_on_similar_vessels_around_the_target(seed):
    frame, box, template, template_box = _pair(seed)
    x, y, w, h = (round(v) for v in box)
    cluttered = frame.copy()
    boat = frame[y:y + h, x:x + w].copy()
    for dx, dy in ((-w - 4, 0), (w + 4, 0), (0, -h - 2), (0, h + 2)):
        cluttered[y + dy:y + dy + h, x + dx:x + dx + w] = boat
    judgement = JUDGE.judge(cluttered, box, template, template_box)
    plain = JUDGE.judge(frame, box, template, template_box)
    assert _flagged(judgement, 'background_clutter'), judgement.measurements
    assert not _flagged(plain, 'background_clutter'), plain.measurements
    assert not _flagged(judgement, 'low_contrast_object'), 'the target still stands out'


def test_fog_on_plain_sea_is_not_clutter():
    frame, box, template, template_box = _pair(0)
    fog = (frame * 0.2 + np.array([200.0, 205.0, 210.0]) * 0.8).astype(np.uint8)
    judgement = JUDGE.judge(fog, box, template, template_box)
    assert not _flagged(judgement, 'background_clutter'), judgement.measurements


def test_otb_rules_come_from_the_box_areas():
    frame, _, template, _ = _pair(0)
    template_box = (100.0, 150.0, 40.0, 20.0)               # 800 px
    cases = {(300.0, 200.0, 15.0, 20.0): (True, True),      # 300 px: ratio 0.375, under 400
             (300.0, 200.0, 25.0, 20.0): (False, False),    # 500 px: ratio 0.625
             (300.0, 150.0, 60.0, 30.0): (True, False)}     # 1800 px: ratio 2.25
    for box, (scale, low_res) in cases.items():
        judgement = JUDGE.judge(frame, box, template, template_box)
        assert _flagged(judgement, 'scale_variation') == scale, box
        assert _flagged(judgement, 'low_resolution') == low_res, box
        assert judgement.measurements['area'] == box[2] * box[3]
    strict = CvJudge(CvOptions(scale_ratio=1.2, min_area=600.0))
    judgement = strict.judge(frame, (300.0, 200.0, 25.0, 20.0), template, template_box)
    assert _flagged(judgement, 'scale_variation') and _flagged(judgement, 'low_resolution')


def test_cv_response_is_the_guide_format_with_canonical_names():
    frame, box, template, template_box = _pair(0)
    blurred = cv2.GaussianBlur(frame, (0, 0), 2.0)
    response = cv_response(JUDGE.judge(blurred, box, template, template_box))
    assert set(response) == FORMULA_CLASSES and set(response) <= set(CHALLENGE_NAMES)
    assert all(type(value) is int and value in (0, 1) for value in response.values())
    assert response['motion_blur'] == 1 and response['scale_variation'] == 0


def test_array_views_measure_like_their_copies():
    frame, box, template, template_box = _pair(2)
    bgr, template_bgr = frame[..., ::-1], template[..., ::-1]
    views = JUDGE.judge(bgr, box, template_bgr, template_box)
    copies = JUDGE.judge(bgr.copy(), box, template_bgr.copy(), template_box)
    assert views == copies


def test_box_partly_outside_the_frame_is_clipped():
    frame, _, template, template_box = _pair(0)
    judgement = JUDGE.judge(frame, (-30.0, 200.0, 80.0, 40.0), template, template_box)
    assert FORMULA_CLASSES <= set(judgement.flags)
    assert all(np.isfinite(v) for v in judgement.measurements.values())


@pytest.mark.parametrize('box', [(700.0, 100.0, 50.0, 30.0), (10.0, -80.0, 40.0, 30.0),
                                 (100.0, 100.0, 0.0, 30.0), (100.0, 100.0, 30.0, -5.0),
                                 (np.nan, np.nan, np.nan, np.nan), (100.6, 100.6, 0.3, 0.3)])
def test_box_without_pixels_judges_only_what_needs_none(box):
    frame, _, template, template_box = _pair(0)
    judgement = JUDGE.judge(frame, box, template, template_box)
    target_classes = {'motion_blur', 'low_contrast_object', 'background_clutter'}
    assert not target_classes & set(judgement.flags), judgement.flags
    assert 'target_illumination_change' not in judgement.measurements
    assert 'illumination_change' in judgement.flags


def test_tiny_target_is_not_judged_for_blur():
    frame, _, template, template_box = _pair(0)
    judgement = JUDGE.judge(frame, (300.0, 200.0, 5.0, 4.0), template, template_box)
    assert 'motion_blur' not in judgement.flags
    assert _flagged(judgement, 'low_resolution')
    assert 'contrast' in judgement.measurements


def test_invalid_template_box_skips_the_template_comparisons():
    frame, box, template, _ = _pair(0)
    judgement = JUDGE.judge(frame, box, template, (np.nan, 0.0, 10.0, 10.0))
    assert {'motion_blur', 'scale_variation'}.isdisjoint(judgement.flags)
    assert {'illumination_change', 'low_contrast_object', 'low_resolution'} <= set(judgement.flags)


def test_box_covering_the_frame_has_no_ring():
    frame, _, template, template_box = _pair(0)
    judgement = JUDGE.judge(frame, (0.0, 0.0, WIDTH, HEIGHT), template, template_box)
    assert {'low_contrast_object', 'background_clutter'}.isdisjoint(judgement.flags)
    assert 'motion_blur' in judgement.flags


def test_flat_crops_are_not_judged():
    flat = np.full((HEIGHT, WIDTH, 3), 120, np.uint8)
    judgement = JUDGE.judge(flat, (100.0, 100.0, 50.0, 30.0), flat, (100.0, 100.0, 50.0, 30.0))
    assert {'motion_blur', 'background_clutter'}.isdisjoint(judgement.flags)
    assert _flagged(judgement, 'low_contrast_object')
    assert not _flagged(judgement, 'illumination_change')


def test_rejects_frames_that_are_not_rgb_uint8():
    frame, box, template, template_box = _pair(0)
    with pytest.raises(ValueError, match='frame must be'):
        JUDGE.judge(frame[..., 0], box, template, template_box)
    with pytest.raises(ValueError, match='template_frame must be'):
        JUDGE.judge(frame, box, template.astype(np.float32), template_box)


@pytest.mark.parametrize('options', [
    {'blur_ratio': 0.0}, {'low_contrast': -1.0}, {'ring_factor': float('nan')},
    {'min_sharpness_side': 2}, {'scale_ratio': 1.0}, {'histogram_bins': (12, 0, 4)}])
def test_options_reject_bad_thresholds(options):
    with pytest.raises(ValueError, match='CvOptions'):
        CvOptions(**options)
