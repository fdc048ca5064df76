"""Images far faster than inference: the newest frame wins, latency stays bounded, memory flat."""
from __future__ import annotations

import statistics
import time
from typing import Dict, List, Tuple

from node_helpers import frame, image, TrackerUnderTest
import pytest
from vision_msgs.msg import Detection2D

FRAMES = 400
PERIOD_S = 0.002          # 500 Hz, many times what the CPU tracker can do
WARM_UP = 100             # frames before the first memory sample (fills the frame buffer)


def _rss_mb() -> float:
    with open('/proc/self/statm') as statm:
        pages = int(statm.read().split()[1])
    return pages * 4096 / 2 ** 20


def _stamp_ns(msg) -> int:
    return msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec


@pytest.mark.parametrize('reliability', ['best_effort', 'reliable'])
def test_overload_drops_old_frames_and_stays_current(ros, reliability):
    node = TrackerUnderTest(ros, image_reliability=reliability)
    node.start_tracking()
    arrivals: List[Tuple[int, float]] = []
    ros.client.create_subscription(
        Detection2D, ros.topic('simtrack/detection'),
        lambda msg: arrivals.append((_stamp_ns(msg), time.perf_counter())), 10)
    worker = node.node._worker
    dropped_before = worker.dropped
    sent: Dict[int, float] = {}
    rgb = frame()
    memory = []
    for index in range(FRAMES):
        msg = image(rgb, 10.0 + index * 0.01)
        sent[_stamp_ns(msg)] = time.perf_counter()
        node.publish(msg)
        if index in (WARM_UP, FRAMES - 1):
            memory.append(_rss_mb())
        time.sleep(PERIOD_S)
    last = _stamp_ns(msg)
    assert ros.wait_for(lambda: any(stamp == last for stamp, _ in arrivals), timeout=10)

    latencies = [arrived - sent[stamp] for stamp, arrived in arrivals if stamp in sent]
    processed = len(latencies)
    assert processed < FRAMES / 2, 'the tracker cannot have kept up with 500 Hz'
    assert worker.dropped - dropped_before > FRAMES / 4
    # Bounded: a result is at most a couple of inferences old, and does not drift upwards.
    assert max(latencies) < 1.0, max(latencies)
    third = max(processed // 3, 1)
    early, late = statistics.median(latencies[:third]), statistics.median(latencies[-third:])
    assert late < early + 0.1, (early, late)
    assert memory[1] - memory[0] < 30.0, memory
    values = node.diagnostics()
    assert int(values['dropped frames']) >= worker.dropped - dropped_before
