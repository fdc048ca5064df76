"""OpenCV baselines: what the build offers, tracking a real sequence, isolation per sequence."""
from __future__ import annotations

import os
from pathlib import Path
import signal
from typing import List, Tuple

import cv2
import numpy as np
import pytest

from simtrack_ros.data.sequences import write_sequence
from simtrack_ros.evaluation import baselines
from simtrack_ros.evaluation.baselines import (
    available_baselines, BASELINES, OpenCVTracker, parse_baselines, unavailable_baselines)
from simtrack_ros.evaluation.ope import summarize
from simtrack_ros.evaluation.runner import run_baseline_isolated

SIZE = 20


def square_frames(count: int, seed: int = 0) -> Tuple[List[np.ndarray], List[List[int]]]:
    """Draw a bright square moving 2 px a frame over a noisy dark background; return boxes too."""
    rng = np.random.default_rng(seed)
    background = rng.integers(0, 60, size=(120, 160, 3), dtype=np.uint8)
    frames, boxes = [], []
    for index in range(count):
        frame = background.copy()
        x, y = 30 + 2 * index, 40 + index
        frame[y:y + SIZE, x:x + SIZE] = (230, 200, 40)
        frame[y + 5:y + 15, x + 5:x + 15] = (40, 60, 220)
        frames.append(frame)
        boxes.append([x, y, SIZE, SIZE])
    return frames, boxes


@pytest.fixture(scope='module')
def square(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp('baselines') / 'square'
    write_sequence(path, *square_frames(16), image_format='png')
    return path


def test_this_build_offers_mil_and_names_what_it_lacks():
    offered = available_baselines()
    assert 'mil' in offered
    assert parse_baselines('all') == offered
    assert parse_baselines('none') == () and parse_baselines('') == ()
    assert parse_baselines('mil, mil') == ('mil',)
    missing = unavailable_baselines()
    assert not set(missing) & set(offered)
    assert set(offered) | set(missing) >= {'csrt', 'kcf', 'mil'}
    for name in set(BASELINES) - set(offered):  # e.g. csrt without opencv-contrib
        with pytest.raises(ValueError, match='opencv-contrib-python-headless'):
            parse_baselines(name)
    with pytest.raises(ValueError, match="unknown baseline 'foo'"):
        parse_baselines('mil,foo')


def test_mil_follows_a_moving_square(square):
    result = run_baseline_isolated('mil', str(square))
    summary = summarize([result])
    assert result.boxes[0].tolist() == [30, 40, SIZE, SIZE]
    assert summary['op50'] >= 0.8, summary['per_sequence']
    assert summary['fps'] > 0


def test_tracker_keeps_the_previous_box_when_opencv_fails(monkeypatch):
    frames, _ = square_frames(2)
    tracker = OpenCVTracker('mil')
    tracker.initialize(frames[0], (30.4, 40.6, 20, 20))
    assert tracker.box == (30.4, 40.6, 20.0, 20.0)

    class Failing:
        def update(self, image):
            return False, (0, 0, 0, 0)

    monkeypatch.setattr(tracker, '_tracker', Failing())
    assert tracker.track(frames[1]) == (30.4, 40.6, 20.0, 20.0)


def test_isolated_runs_do_not_depend_on_what_ran_before(square):
    # MIL's random state lives in the process: two runs in one process differ ...
    frames = [cv2.cvtColor(f, cv2.COLOR_RGB2BGR) for f in square_frames(16, seed=1)[0]]
    in_process = []
    for _ in range(2):
        tracker = cv2.TrackerMIL_create()
        tracker.init(frames[0], (30, 40, SIZE, SIZE))
        in_process.append([tracker.update(frame)[1] for frame in frames[1:]])
    # ... while every forked run starts from the same state.
    first = run_baseline_isolated('mil', str(square))
    second = run_baseline_isolated('mil', str(square))
    np.testing.assert_array_equal(first.boxes, second.boxes)
    if in_process[0] == in_process[1]:
        pytest.skip('this OpenCV build keeps no random state across MIL runs')


def test_a_crashing_tracker_is_reported(square, monkeypatch):
    def crash(self, frame):
        os.kill(os.getpid(), signal.SIGKILL)

    monkeypatch.setattr(baselines.OpenCVTracker, 'track', crash)
    with pytest.raises(RuntimeError, match=r'baseline mil crashed on .*square \(exit code -9\)'):
        run_baseline_isolated('mil', str(square))


def test_an_error_in_the_child_is_raised_with_its_message(tmp_path):
    with pytest.raises(RuntimeError, match='baseline mil on .*FileNotFoundError'):
        run_baseline_isolated('mil', str(tmp_path / 'missing'))
