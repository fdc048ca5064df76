"""OpenCV baselines: what the build offers, tracking a real sequence, isolation per sequence."""
from __future__ import annotations

import multiprocessing
import os
from pathlib import Path
import signal
import subprocess
import sys
from typing import List, Tuple

import numpy as np
import pytest

from simtrack_ros.data.sequences import write_sequence
from simtrack_ros.evaluation import baselines, runner
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
    class Failing:  # no real MIL in this process: its random state would reach later forks
        def init(self, image, box):
            assert image.shape == (120, 160, 3) and box == (30, 40, 20, 21)

        def update(self, image):
            return False, (0, 0, 0, 0)

    tracker = OpenCVTracker('mil')
    monkeypatch.setattr(tracker, '_create', Failing)
    frames, _ = square_frames(2)
    tracker.initialize(frames[0], (30.4, 40.6, 20, 20))
    assert tracker.box == (30.4, 40.6, 20.0, 20.0)
    assert tracker.track(frames[1]) == (30.4, 40.6, 20.0, 20.0)


#: Runs MIL twice in one fresh process; prints whether the two runs agree.
MIL_TWICE = """
import cv2, numpy as np
from test_evaluation_baselines import SIZE, square_frames
frames = [cv2.cvtColor(f, cv2.COLOR_RGB2BGR) for f in square_frames(16)[0]]
runs = []
for _ in range(2):
    tracker = cv2.TrackerMIL_create()
    tracker.init(frames[0], (30, 40, SIZE, SIZE))
    runs.append([tracker.update(frame)[1] for frame in frames[1:]])
print(runs[0] == runs[1])
"""


def test_isolated_runs_do_not_depend_on_what_ran_before(square):
    # MIL's random state lives in the process (a separate one here, so that this test
    # process stays untouched): two runs in one process differ ...
    same = subprocess.run([sys.executable, '-c', MIL_TWICE], cwd=Path(__file__).parent,
                          capture_output=True, text=True, check=True, timeout=120).stdout
    # ... while every forked run starts from the state of the process that forks it.
    first = run_baseline_isolated('mil', str(square))
    second = run_baseline_isolated('mil', str(square))
    np.testing.assert_array_equal(first.boxes, second.boxes)
    if same.strip() == 'True':
        pytest.skip('this OpenCV build keeps no random state across MIL runs')


def test_a_crashing_tracker_is_reported(square, monkeypatch):
    def crash(self, frame):
        os.kill(os.getpid(), signal.SIGKILL)

    # A plain fork, so that the child has the crashing method (the fork server's would not).
    monkeypatch.setattr(runner, '_baseline_context', lambda: multiprocessing.get_context('fork'))
    monkeypatch.setattr(baselines.OpenCVTracker, 'track', crash)
    with pytest.raises(RuntimeError, match=r'baseline mil crashed on .*square \(exit code -9\)'):
        run_baseline_isolated('mil', str(square))


def test_an_error_in_the_child_is_raised_with_its_message(tmp_path):
    with pytest.raises(RuntimeError, match='baseline mil on .*FileNotFoundError'):
        run_baseline_isolated('mil', str(tmp_path / 'missing'))
