"""Every set_target request is answered, in bounded time, while detections keep flowing.

The tracker node runs in its own process; this process is the client: it publishes a camera
stream, starts tracking, then sends 1000 set_target calls at 1 kHz.
"""
from __future__ import annotations

import os
import threading
import time

from diagnostic_msgs.msg import DiagnosticArray
from node_helpers import (frame, image, set_target_request, start_node_process,
                          stop_node_process)
import pytest
from rclpy.node import Node
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import Image
from simtrack_ros_interfaces.srv import SetTarget
from vision_msgs.msg import Detection2D

CALLS = 1000
RATE_HZ = 1000.0
#: Replies must arrive within this long of their request, however deep the burst.
MAX_REPLY_S = 10.0
CLIENT_QOS = QoSProfile(depth=0, history=HistoryPolicy.KEEP_ALL,
                        reliability=ReliabilityPolicy.RELIABLE)


@pytest.fixture
def node_process(ros_domain_id, tmp_path):
    """Run a tracker node in a child process, in its own namespace."""
    namespace = f'/burst{os.getpid()}'
    log = tmp_path / 'node.log'
    with log.open('w') as output:
        process = start_node_process(namespace, output, device='cpu', max_targets=2)
    yield namespace
    stop_node_process(process)
    print(log.read_text())


def test_a_thousand_set_target_calls_at_1khz_are_all_answered(ros, node_process):
    namespace = node_process
    client_node: Node = ros.client
    camera = client_node.create_publisher(Image, f'{namespace}/image',
                                          QoSProfile(depth=1,
                                                     reliability=ReliabilityPolicy.RELIABLE))
    detections, diagnostics = [], []
    client_node.create_subscription(
        DiagnosticArray, '/diagnostics',
        lambda msg: diagnostics.extend(
            values for values in ({kv.key: kv.value for kv in status.values}
                                  for status in msg.status)
            if values.get('input topic', '').startswith(f'{namespace}/')), 10)
    client_node.create_subscription(
        Detection2D, f'{namespace}/simtrack/detection',
        lambda msg: detections.append(time.monotonic()), 100)
    stop_camera = threading.Event()

    def publish_frames() -> None:
        rgb, stamp = frame(), 1.0
        while not stop_camera.is_set():
            camera.publish(image(rgb, stamp))
            stamp += 1 / 30
            time.sleep(1 / 30)
    camera_thread = threading.Thread(target=publish_frames, daemon=True)
    camera_thread.start()
    client = client_node.create_client(SetTarget, f'{namespace}/simtrack/set_target',
                                       qos_profile=CLIENT_QOS)
    try:
        assert client.wait_for_service(timeout_sec=30), 'the node never offered set_target'

        def first_target() -> bool:
            future = client.call_async(set_target_request(160, 120, 40, 30, target_id='boat'))
            return ros.wait_for(future.done, 10) and future.result().success
        assert ros.wait_for(first_target, 30, interval=0.5), 'could not start tracking'
        assert ros.wait_for(lambda: len(detections) > 5, 20), 'no detections before the burst'

        sent, answered = [], [0.0] * CALLS
        futures = []
        start = time.monotonic()
        for index in range(CALLS):
            due = start + index / RATE_HZ
            delay = due - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            sent.append(time.monotonic())
            future = client.call_async(set_target_request(
                160 + index % 5, 120, 40, 30, target_id='boat'))
            future.add_done_callback(
                lambda _, i=index: answered.__setitem__(i, time.monotonic()))
            futures.append(future)
        send_s = time.monotonic() - start
        burst_end = time.monotonic()
        ros.wait_for(lambda: all(f.done() for f in futures), 60)
        done = [f for f in futures if f.done()]
        replies = [f.result() for f in done]
        waits = sorted(answered[i] - sent[i] for i, f in enumerate(futures) if f.done())
        ok = sum(r.success for r in replies)
        busy = sum('busy' in r.message for r in replies)
        print(f'{CALLS} calls sent in {send_s:.2f} s: {len(done)} answered ({ok} tracking, '
              f'{busy} busy), reply time median {waits[len(waits) // 2] * 1e3:.0f} ms, '
              f'max {waits[-1] * 1e3:.0f} ms; detections during the burst: '
              f'{sum(start <= t <= burst_end for t in detections)}')
        assert len(done) == CALLS, f'{CALLS - len(done)} calls never answered'
        assert all(r.success or r.message for r in replies)
        assert ok > 0 and all(r.success or 'busy' in r.message for r in replies), \
            {r.message for r in replies if not r.success}
        assert waits[-1] < MAX_REPLY_S
        assert ros.wait_for(lambda: diagnostics and diagnostics[-1].get(
            'set_target busy replies') == str(busy), 5), diagnostics[-1:]
        during = [t for t in detections if start <= t <= burst_end + 1.0]
        gaps = [b - a for a, b in zip([start] + during, during + [burst_end])]
        assert during and max(gaps) < 2.0, f'detections stalled for {max(gaps):.1f} s'
    finally:
        stop_camera.set()
        camera_thread.join(2)
        client_node.destroy_client(client)
