"""The frame ring buffer (stamp lookup) and the newest-frame-wins inference worker."""
from __future__ import annotations

import threading
import time

import pytest

from simtrack_ros.ros.frame_buffer import FrameBuffer
from simtrack_ros.ros.inference_worker import InferenceWorker, LatestSlot
from simtrack_ros.ros.stamps import format_stamp

S = 1_000_000_000
MS = 1_000_000


def _buffer(**kwargs) -> FrameBuffer:
    frames = FrameBuffer(5, **kwargs)
    for index in range(5):
        frames.push(10 * S + index * 100 * MS, f'frame{index}')
    return frames


def test_exact_nearest_and_newest():
    frames = _buffer()
    exact = frames.lookup(10 * S + 200 * MS)
    assert (exact.frame, exact.kind) == ('frame2', 'exact')
    assert 'stamp 10.200000000' in exact.message
    nearest = frames.lookup(10 * S + 240 * MS)
    assert (nearest.frame, nearest.kind) == ('frame2', 'nearest')
    assert '40.0 ms away' in nearest.message
    zero = frames.lookup(0)
    assert (zero.frame, zero.kind) == ('frame4', 'newest') and 'zero stamp' in zero.message
    old = frames.lookup(9 * S)
    assert (old.frame, old.kind) == ('frame4', 'newest')
    assert 'older than the 5 buffered frames' in old.message
    ahead = frames.lookup(11 * S)
    assert (ahead.frame, ahead.kind) == ('frame4', 'newest') and 'ahead' in ahead.message
    edge = frames.lookup(10 * S - 5 * MS)           # within the 10 ms tolerance
    assert (edge.frame, edge.kind) == ('frame0', 'nearest')


def test_max_age():
    frames = _buffer(max_age_ns=250 * MS)
    assert frames.lookup(10 * S + 200 * MS).kind == 'exact'
    too_old = frames.lookup(10 * S + 100 * MS)
    assert too_old.frame == 'frame4' and 'limit 0.250 s' in too_old.message


def test_ring_and_resize():
    frames = _buffer()
    assert len(frames) == 5 and frames.length == 5
    frames.push(11 * S, 'frame5')
    assert len(frames) == 5 and frames.lookup(10 * S).kind == 'newest'
    frames.resize(2)
    assert len(frames) == 2 and frames.newest() == (11 * S, 'frame5')
    frames.clear()
    assert frames.lookup(0) is None and frames.newest() is None
    with pytest.raises(ValueError):
        FrameBuffer(0)
    with pytest.raises(ValueError):
        frames.resize(0)


def test_time_going_backwards_clears():
    frames = _buffer()
    assert not frames.push(10 * S + 400 * MS, 'same stamp again')
    assert frames.push(3 * S, 'bag restarted')
    assert len(frames) == 1 and frames.lookup(10 * S).frame == 'bag restarted'


def test_format_stamp():
    assert format_stamp(12 * S + 5) == '12.000000005'


def test_latest_slot_replaces():
    slot = LatestSlot()
    assert not slot.put(1) and slot.put(2) and slot.replaced == 1
    assert slot.take(0) == 2 and slot.take(0) is None
    slot.close()
    assert slot.take(None) is None


def test_worker_processes_the_newest_and_survives_errors():
    started, release, seen, errors = threading.Event(), threading.Event(), [], []

    def process(item):
        seen.append(item)
        if item == 0:
            started.set()
            release.wait(5)
        if item == 'boom':
            raise RuntimeError('boom')
    worker = InferenceWorker(process, errors.append)
    worker.start()
    worker.submit(0)
    assert started.wait(5)
    for item in range(1, 6):                         # arrive while 0 is being processed
        worker.submit(item)
    release.set()
    worker.submit('boom')
    deadline = time.monotonic() + 5
    while 'boom' not in seen and time.monotonic() < deadline:
        time.sleep(0.01)
    worker.submit(7)
    while 7 not in seen and time.monotonic() < deadline:
        time.sleep(0.01)
    assert worker.stop() and not worker.running
    assert seen[0] == 0 and 1 not in seen and seen[-1] == 7
    assert worker.dropped >= 4 and worker.submitted == 8
    assert [str(e) for e in errors] == ['boom']


def test_worker_rate_limit():
    seen = []
    worker = InferenceWorker(lambda item: seen.append(time.monotonic()), lambda e: None,
                             min_period=lambda: 0.05)
    worker.start()
    deadline = time.monotonic() + 0.4
    while time.monotonic() < deadline:
        worker.submit(1)
        time.sleep(0.002)
    worker.stop()
    gaps = [b - a for a, b in zip(seen, seen[1:])]
    assert 3 <= len(seen) <= 10 and min(gaps) >= 0.045
    assert worker.dropped > 50
