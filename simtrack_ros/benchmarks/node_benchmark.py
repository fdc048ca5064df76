"""Latency the ROS node adds around the tracker: image publish -> Detection2D receive.

The tracker node runs in its own process (as on a robot; ``--in-process`` runs it in this
one) with the demo model on the CPU and one target. This process plays the camera: it
publishes a bgr8 frame (reliable, like a driver), waits for the node's Detection2D and
TrackerStatus with that frame's stamp, then sends the next frame after a short pause, so
nothing queues.
Per frame:

* total = Detection2D receive time - image publish time (both taken here);
* tracker = ``TargetStatus.processing_time_ms`` (the Tracker's crop + forward + post);
* node-added = total - tracker: image transport both ways, conversion, hand-off to the
  inference thread, message building and publishing;
* in-node = ``TargetStatus.frame_age_ms`` - tracker: image stamp to status publish (inbound
  transport, conversion, hand-off, publishing), by the node's clock (this machine's);
* echo = for reference, the round trip of the same image through a bare rclpy node, in the
  same place as the tracker node, that only republishes the image header: the cost of ROS
  message passing of that image in Python, which any node pays;
* beyond-echo = node-added - echo: what the tracker node adds on top of that transport;
* RSS = resident memory of the node's process after that size's frames (the malloc tuning
  keeps freed frame buffers mapped, so this shows what it costs).

Medians over ``--frames`` frames after warm-up (node-added also as the 90th percentile):

    python benchmarks/node_benchmark.py [--frames 100] [--in-process] [--json results.json]
"""
from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
import platform
import signal
import subprocess
import sys
import threading
import time
from typing import Callable, Dict, List, Optional, Tuple

from machine_info import machine_header, machine_info
import numpy as np
import rclpy
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.node import Node
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import Image
from simtrack_ros_interfaces.msg import TrackerStatus
from simtrack_ros_interfaces.srv import SetTarget
from std_msgs.msg import Header
from vision_msgs.msg import Detection2D

from simtrack_ros.allocator_tuning import tune_allocator_for_images
from simtrack_ros.ros.tracker_node import TrackerNode

NAMESPACE = '/node_benchmark'
SIZES = ((640, 480), (1920, 1080))
WARM_UP = 5
TIMEOUT_S = 20.0
#: Target for beyond-echo: what the node adds over a bare rclpy echo of the same image.
TARGET_MS = 1.0
#: Pause between frames, so the transport settles as it does between camera frames.
GAP_S = 0.03
IMAGE_QOS = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE)
NODE_ARGS = ['-p', 'device:=cpu', '-p', 'publish_debug_image:=false']
Key = Tuple[int, int]


def _key(header: Header) -> Key:
    return header.stamp.sec, header.stamp.nanosec


class Echo(Node):
    """The baseline: republishes the header of every ``echo_image`` frame on ``echo``."""

    def __init__(self) -> None:
        super().__init__('benchmark_echo', namespace=NAMESPACE)
        publisher = self.create_publisher(Header, 'echo', 10)
        self.create_subscription(Image, 'echo_image', lambda msg: publisher.publish(msg.header),
                                 IMAGE_QOS)


class Camera(Node):
    """Publishes frames and records when each frame's outputs arrive."""

    def __init__(self) -> None:
        super().__init__('benchmark_camera', namespace=NAMESPACE)
        self.image = self.create_publisher(Image, 'image', IMAGE_QOS)
        self.echo_image = self.create_publisher(Image, 'echo_image', IMAGE_QOS)
        self.arrived: Dict[Key, float] = {}
        self.statuses: Dict[Key, TrackerStatus] = {}
        #: Notified on every arrival, so waiting for one takes no CPU (no polling).
        self.changed = threading.Condition()
        self.create_subscription(Detection2D, 'simtrack/detection', self._on_arrival, 10)
        self.create_subscription(Header, 'echo', self._on_arrival, 10)
        self.create_subscription(TrackerStatus, 'simtrack/status', self._on_status, 10)
        self.set_target = self.create_client(SetTarget, 'simtrack/set_target')

    def _on_arrival(self, msg) -> None:
        arrived = time.perf_counter()
        with self.changed:
            self.arrived[_key(msg if isinstance(msg, Header) else msg.header)] = arrived
            self.changed.notify_all()

    def _on_status(self, msg: TrackerStatus) -> None:
        with self.changed:
            self.statuses[_key(msg.header)] = msg
            self.changed.notify_all()

    def wait_for(self, condition: Callable[[], bool], timeout: float) -> bool:
        """Block until ``condition()`` holds after an arrival, or ``timeout`` s pass."""
        with self.changed:
            return self.changed.wait_for(condition, timeout)

    def frame(self, data: bytes, width: int, height: int) -> Image:
        """Make a bgr8 Image stamped now."""
        msg = Image(height=height, width=width, encoding='bgr8', step=width * 3, data=data)
        msg.header.stamp = self.get_clock().now().to_msg()
        msg.header.frame_id = 'camera'
        return msg


def _wait(condition: Callable[[], bool], timeout: float = TIMEOUT_S) -> bool:
    """Poll ``condition`` (for set-up steps, not for timed frames)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.001)
    return True


def _set_target(camera: Camera, data: bytes, width: int, height: int) -> None:
    """Send frames until the node has one, then (re)set the target in the frame's middle."""
    assert camera.set_target.wait_for_service(timeout_sec=TIMEOUT_S), 'no set_target service'
    deadline = time.monotonic() + TIMEOUT_S
    while True:
        msg = camera.frame(data, width, height)
        camera.image.publish(msg)
        time.sleep(0.2)
        request = SetTarget.Request(header=msg.header, target_id='benchmark')
        request.bbox.center.position.x, request.bbox.center.position.y = width / 2, height / 2
        request.bbox.size_x, request.bbox.size_y = width / 8, height / 8
        future = camera.set_target.call_async(request)
        assert _wait(future.done), 'set_target did not answer'
        if future.result().success:
            return
        assert time.monotonic() < deadline, future.result().message


def _round_trips(camera: Camera, publisher, data: bytes, width: int, height: int,
                 frames: int, status: bool) -> List[Tuple[float, float, float]]:
    """(round trip, tracker, frame age) ms per frame after warm-up; lost frames skipped."""
    rows = []
    for index in range(WARM_UP + frames):
        time.sleep(GAP_S)
        msg = camera.frame(data, width, height)
        key = _key(msg.header)
        sent = time.perf_counter()
        publisher.publish(msg)
        if not camera.wait_for(
                lambda: key in camera.arrived and (not status or key in camera.statuses), 5.0):
            continue
        target = camera.statuses[key].targets[0] if status else None
        if index >= WARM_UP:
            rows.append(((camera.arrived[key] - sent) * 1e3,
                         target.processing_time_ms if target else 0.0,
                         target.frame_age_ms if target else 0.0))
    return rows


def measure(camera: Camera, width: int, height: int, frames: int) -> Dict[str, float]:
    """Median latencies (ms) of one frame size."""
    data = np.random.default_rng(0).integers(0, 256, (height, width, 3), np.uint8).tobytes()
    assert _wait(lambda: camera.echo_image.get_subscription_count() > 0), 'no echo node'
    echo = float(np.median([r[0] for r in _round_trips(
        camera, camera.echo_image, data, width, height, frames, status=False)]))
    _set_target(camera, data, width, height)
    rows = _round_trips(camera, camera.image, data, width, height, frames, status=True)
    totals, trackers, ages = (np.array(column) for column in zip(*rows))
    added = totals - trackers
    return {'width': width, 'height': height, 'frames': len(rows),
            'total_ms': float(np.median(totals)), 'tracker_ms': float(np.median(trackers)),
            'node_added_ms': float(np.median(added)),
            'node_added_p90_ms': float(np.percentile(added, 90)),
            'in_node_ms': float(np.median(ages - trackers)), 'echo_ms': echo,
            'beyond_transport_ms': float(np.median(added)) - echo}


def _spin(node: Node) -> Tuple[SingleThreadedExecutor, threading.Thread]:
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    thread = threading.Thread(target=executor.spin, daemon=True)
    thread.start()
    return executor, thread


def _start_nodes(in_process: bool) -> Tuple[List[subprocess.Popen], List[Node]]:
    """Start the tracker and echo nodes: here (returned) or in child processes."""
    if in_process:
        return [], [TrackerNode(namespace=NAMESPACE, cli_args=['--ros-args', *NODE_ARGS]),
                    Echo()]
    env = {k: v for k, v in os.environ.items() if k != '_ROS_WHEELS_BOOTSTRAP_COMPLETE'}
    tracker = [sys.executable, '-m', 'simtrack_ros.ros.tracker_node', '--ros-args', '-r',
               f'__ns:={NAMESPACE}', *NODE_ARGS, '--log-level', 'warn']
    echo = [sys.executable, str(Path(__file__).resolve()), '--serve-echo']
    return [subprocess.Popen(tracker, env=env), subprocess.Popen(echo, env=env)], []


def _serve_echo() -> None:
    rclpy.init()
    try:
        rclpy.spin(Echo())
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        rclpy.try_shutdown()


def _resident_mib(pid: int) -> float:
    """Resident memory of a process in MiB (Linux /proc), NaN where unavailable."""
    try:
        with open(f'/proc/{pid}/status') as status:
            for line in status:
                if line.startswith('VmRSS:'):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return float('nan')


def run(frames: int, in_process: bool) -> List[Dict[str, float]]:
    """Measure every size; the nodes are started and stopped here."""
    rclpy.init()
    children, nodes = _start_nodes(in_process)
    camera = Camera()
    nodes.append(camera)
    spinners = [_spin(node) for node in nodes]
    node_pid = children[0].pid if children else os.getpid()
    try:
        results = []
        for width, height in SIZES:
            results.append(measure(camera, width, height, frames))
            results[-1]['node_rss_mib'] = _resident_mib(node_pid)
        return results
    finally:
        for child in children:
            child.send_signal(signal.SIGINT)
        for child in children:
            try:
                child.wait(timeout=10)
            except subprocess.TimeoutExpired:
                child.kill()
        for (executor, thread), node in zip(spinners, nodes):
            executor.shutdown(timeout_sec=2.0)
            thread.join(timeout=2.0)
            node.destroy_node()
        rclpy.try_shutdown()


def table(results: List[Dict[str, float]], in_process: bool, allocator: str) -> str:
    """Format the results as a text table."""
    where = 'in the benchmark process' if in_process else 'in its own process'
    lines = [f'node-added latency: bgr8 frames, demo model on the CPU, node {where} '
             f'({platform.machine()}, {os.cpu_count()} CPUs); ms, medians',
             f'{"frame":<10} {"frames":>6} {"total":>7} {"tracker":>7} {"node-added":>10} '
             f'{"p90":>6} {"in-node":>7} {"echo":>6} {"beyond-echo":>11} {"RSS MiB":>8}']
    for r in results:
        size = f'{r["width"]}x{r["height"]}'
        lines.append(f'{size:<10} {r["frames"]:>6} {r["total_ms"]:>7.2f} '
                     f'{r["tracker_ms"]:>7.2f} {r["node_added_ms"]:>10.2f} '
                     f'{r["node_added_p90_ms"]:>6.2f} {r["in_node_ms"]:>7.2f} '
                     f'{r["echo_ms"]:>6.2f} {r["beyond_transport_ms"]:>11.2f} '
                     f'{r["node_rss_mib"]:>8.0f}')
    profile = os.environ.get('FASTDDS_DEFAULT_PROFILES_FILE') or 'none (Fast DDS defaults)'
    lines.append(f'target: beyond-echo < {TARGET_MS} ms. echo: the same image through a bare '
                 'rclpy node that passes the header back; beyond-echo = node-added - echo '
                 f'(what the node adds over plain ROS image transport). DDS profile: {profile}. '
                 f"Every process here: {allocator}. RSS: resident memory of the node's process "
                 '(in-process: the whole benchmark) after the frames of that size')
    return '\n'.join(lines)


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--frames', type=int, default=100, help='frames per size (default 100)')
    parser.add_argument('--in-process', action='store_true',
                        help='run the nodes in this process instead of their own')
    parser.add_argument('--json', type=Path, help='also write the results to this JSON file')
    parser.add_argument('--serve-echo', action='store_true', help=argparse.SUPPRESS)
    options = parser.parse_args(argv)
    os.environ.setdefault('ROS_DOMAIN_ID', str(1 + os.getpid() % 200))
    allocator = tune_allocator_for_images()
    if options.serve_echo:
        _serve_echo()
        return 0
    print(machine_header(), flush=True)
    results = run(options.frames, options.in_process)
    print(table(results, options.in_process, allocator), flush=True)
    if options.json:
        options.json.write_text(json.dumps(
            {'machine': machine_info(), 'in_process': options.in_process,
             'allocator': allocator, 'results': results}, indent=2) + '\n')
    return 0


if __name__ == '__main__':
    sys.exit(main())
