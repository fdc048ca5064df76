"""Challenge cues measured on known frames, the calibration's maths, storage and fit."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from simtrack_ros.challenges import CHALLENGE_NAMES
from simtrack_ros.model import build_model, get_config, load_checkpoint, save_checkpoint
from simtrack_ros.model.challenge_calibration import (
    ChallengeCalibration, fitted_by_logistic_regression, head_only_classes)
from simtrack_ros.tracking import EngineOptions, Tracker, TrackerOptions
from simtrack_ros.tracking.challenge_cues import (
    box_luma, CUE_NAMES, measure_cues, reference_of)

C, F = len(CHALLENGE_NAMES), len(CUE_NAMES)
CUE = {name: index for index, name in enumerate(CUE_NAMES)}


def grey_frame(value: int = 100, height: int = 200, width: int = 400) -> np.ndarray:
    return np.full((height, width, 3), value, np.uint8)


def calibration(seed: int = 0) -> ChallengeCalibration:
    rng = np.random.default_rng(seed)
    return ChallengeCalibration(CHALLENGE_NAMES, CUE_NAMES, rng.normal(size=C + F),
                                rng.uniform(0.5, 2.0, C + F), rng.normal(size=(C, C + F)),
                                rng.normal(size=C))


# ------------------------------------------------------------------ cues
def test_cues_of_a_box_that_doubled_moved_and_brightened():
    first = grey_frame(100)
    reference = reference_of(first, (100, 50, 40, 20))
    frame = grey_frame(100)
    frame[40:80, 150:230] = 150                     # the target, now 80 x 40 and brighter
    cues = measure_cues(frame, (150, 40, 80, 40), (100, 50, 40, 20), reference, 0.8)
    assert cues.dtype == np.float32 and cues.shape == (F,)
    assert cues[CUE['abs_log_scale']] == pytest.approx(math.log(4.0), rel=1e-5)
    assert cues[CUE['log_area']] == pytest.approx(math.log(3200.0), rel=1e-5)
    move = math.hypot(190 - 120, 60 - 60)
    assert cues[CUE['speed']] == pytest.approx(move / 400, rel=1e-5)
    assert cues[CUE['relative_speed']] == pytest.approx(move / math.sqrt(3200), rel=1e-5)
    assert cues[CUE['border_gap']] == pytest.approx(40 / math.sqrt(3200), rel=1e-5)
    assert cues[CUE['abs_log_aspect']] == pytest.approx(0.0, abs=1e-6)   # 2:1 both times
    assert cues[CUE['luma_change']] == pytest.approx(0.5, rel=1e-4)      # 150 / 100 - 1
    assert cues[CUE['contrast']] == pytest.approx(math.sqrt(3) * 50 / 255, rel=1e-4)
    assert cues[CUE['sharpness']] == pytest.approx(0.0, abs=1e-6)        # flat inside
    assert cues[CUE['frame_sharpness']] == pytest.approx(0.0, abs=1e-6)  # flat first frame
    assert cues[CUE['confidence']] == pytest.approx(0.8)


def test_cues_at_the_border_and_of_an_empty_or_outside_box_are_finite():
    frame = grey_frame(0)
    reference = reference_of(frame, (10, 10, 20, 20))
    cues = measure_cues(frame, (0, 0, 30, 30), (10, 10, 20, 20), reference, float('nan'))
    assert cues[CUE['border_gap']] == 0.0 and cues[CUE['confidence']] == 0.0
    outside = measure_cues(frame, (500, 300, 20, 20), (10, 10, 20, 20), reference, 1.0)
    assert np.isfinite(outside).all() and outside[CUE['border_gap']] == 0.0
    assert box_luma(frame, (500, 300, 20, 20)) == 0.0


def test_a_textured_first_frame_is_sharper_than_a_blurred_one():
    rng = np.random.default_rng(1)
    sharp = rng.integers(0, 256, (120, 160, 3), dtype=np.uint8)
    blurred = np.ascontiguousarray(np.repeat(np.repeat(sharp[::4, ::4], 4, 0), 4, 1))
    box = (40, 40, 40, 30)
    assert (reference_of(sharp, box).frame_sharpness
            > reference_of(blurred, box).frame_sharpness + 1.0)


# ------------------------------------------------------------------ calibration maths
def test_probabilities_are_the_logistic_regression_by_hand():
    cal = calibration()
    rng = np.random.default_rng(2)
    logits, cues = rng.normal(size=(3, C)), rng.normal(size=(3, F))
    inputs = np.concatenate([logits, cues], 1)
    expected = 1 / (1 + np.exp(-(((inputs - cal.mean) / cal.scale) @ cal.weight.T + cal.bias)))
    np.testing.assert_allclose(cal.probabilities(logits, cues), expected, rtol=1e-5)
    with pytest.raises(ValueError, match='expects 10 logits and 11 cues'):
        cal.probabilities(logits, cues[:, :3])


def test_round_trip_and_malformed_data_are_clear_errors():
    cal = calibration()
    again = ChallengeCalibration.from_dict(cal.to_dict())
    assert again.class_names == cal.class_names and again.cue_names == cal.cue_names
    np.testing.assert_array_equal(again.weight, cal.weight)
    data = cal.to_dict()
    with pytest.raises(ValueError, match="lacks 'bias'"):
        ChallengeCalibration.from_dict({k: v for k, v in data.items() if k != 'bias'})
    with pytest.raises(ValueError, match=r'weight must have shape \(10, 21\)'):
        ChallengeCalibration.from_dict({**data, 'weight': [[0.0] * 3] * 10})
    with pytest.raises(ValueError, match='NaN or infinite'):
        ChallengeCalibration.from_dict({**data, 'bias': [float('nan')] * C})
    with pytest.raises(ValueError, match='scale must be positive'):
        ChallengeCalibration.from_dict({**data, 'scale': [0.0] * (C + F)})
    with pytest.raises(ValueError, match='must be a mapping'):
        ChallengeCalibration.from_dict([1, 2])
    with pytest.raises(ValueError, match='fit it again'):
        cal.check_matches(CHALLENGE_NAMES, CUE_NAMES[:-1])


def test_fit_learns_a_threshold_rule_and_ignores_unknown_labels():
    rng = np.random.default_rng(3)
    inputs = rng.normal(size=(2000, C + F))
    labels = (inputs[:, C:C + 1] > 0.5).astype(float).repeat(C, axis=1)   # class = cue 0 > 0.5
    known = np.ones_like(labels, bool)
    poisoned = labels.copy()
    poisoned[:1000, 1] = 1 - poisoned[:1000, 1]                           # wrong but unknown
    known[:1000, 1] = False
    cal = fitted_by_logistic_regression(CHALLENGE_NAMES, CUE_NAMES, inputs, poisoned, known)
    predicted = cal.probabilities(inputs[:, :C], inputs[:, C:]) >= 0.5
    accuracy = (predicted == (labels > 0.5)).mean(axis=0)
    assert accuracy.min() > 0.97, accuracy


def test_a_class_without_examples_keeps_the_head_probability():
    rng = np.random.default_rng(4)
    inputs = rng.normal(size=(500, C + F))
    labels = (inputs[:, C:C + 1] > 0.0).astype(float).repeat(C, axis=1)
    labels[:, 2] = 0.0                                                    # never seen
    known = np.ones_like(labels, bool)
    known[5:, 3] = False                                                  # judged 5 times only
    assert head_only_classes(labels, known) == [2, 3]
    cal = fitted_by_logistic_regression(CHALLENGE_NAMES, CUE_NAMES, inputs, labels, known)
    probabilities = cal.probabilities(inputs[:, :C], inputs[:, C:])
    head = 1.0 / (1.0 + np.exp(-inputs[:, :C]))
    np.testing.assert_allclose(probabilities[:, [2, 3]], head[:, [2, 3]], rtol=1e-5)
    assert ((probabilities[:, 0] >= 0.5) == (labels[:, 0] > 0.5)).mean() > 0.97


# ------------------------------------------------------------------ storage and tracker
@pytest.fixture(scope='module')
def calibrated(tmp_path_factory):
    torch.manual_seed(0)
    model = build_model(get_config('small').replace(multi_label=True))
    model.trained_heads = {'box', 'cls'}
    model.challenge_calibration = calibration()
    return save_checkpoint(model, tmp_path_factory.mktemp('cal') / 'calibrated.pth')


def test_checkpoint_keeps_the_calibration_and_drops_a_broken_one(calibrated, tmp_path):
    model, _ = load_checkpoint(calibrated)
    np.testing.assert_array_equal(model.challenge_calibration.weight, calibration().weight)
    payload = torch.load(calibrated, weights_only=True)
    payload['challenge_calibration']['bias'] = [1.0]
    torch.save(payload, tmp_path / 'broken.pth')
    model, report = load_checkpoint(tmp_path / 'broken.pth')
    assert model.challenge_calibration is None
    assert any('bias must have shape' in note and "head's own probabilities" in note
               for note in report.notes), report.notes


def frames(count: int = 4):
    rng = np.random.default_rng(4)
    base = rng.integers(0, 256, (180, 320, 3), dtype=np.uint8)
    return [np.roll(base, 3 * i, axis=1) for i in range(count)]


def test_tracker_publishes_calibrated_probabilities_from_its_cues(calibrated):
    model, _ = load_checkpoint(calibrated)
    tracker = Tracker(model, TrackerOptions(engine=EngineOptions(device='cpu')))
    first, *rest = frames()
    tracker.initialize(first, (100, 60, 60, 40), 'boat')
    for frame in rest:
        (result,) = tracker.track(frame)
        assert result.cues is not None and result.cues.shape == (F,)
        expected = model.challenge_calibration.probabilities(result.logits[None],
                                                             result.cues[None])[0]
        np.testing.assert_allclose(result.probabilities, expected, rtol=1e-6)
        head = 1 / (1 + np.exp(-result.logits.astype(np.float64)))
        assert not np.allclose(result.probabilities, head, atol=1e-3)


def test_tracker_without_calibration_measures_cues_only_when_asked(calibrated):
    model, _ = load_checkpoint(calibrated)
    model.challenge_calibration = None
    first, second, *_ = frames()
    for measure, expect in ((False, None), (True, F)):
        tracker = Tracker(model, TrackerOptions(engine=EngineOptions(device='cpu'),
                                                measure_cues=measure))
        tracker.initialize(first, (100, 60, 60, 40))
        (result,) = tracker.track(second)
        assert (result.cues is None) if expect is None else (result.cues.shape == (expect,))
        np.testing.assert_allclose(result.probabilities,
                                   1 / (1 + np.exp(-result.logits.astype(np.float64))),
                                   rtol=1e-5)


def test_a_calibration_for_other_cues_warns_and_publishes_the_head(calibrated):
    model, _ = load_checkpoint(calibrated)
    old = model.challenge_calibration.to_dict()
    model.challenge_calibration = ChallengeCalibration.from_dict(
        {**old, 'cue_names': ['old_cue'] * F})
    with pytest.warns(RuntimeWarning, match='fit it again'):
        tracker = Tracker(model, TrackerOptions(engine=EngineOptions(device='cpu')))
    assert tracker.calibration is None
