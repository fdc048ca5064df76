"""Out-of-the-box demo, no ``ros2 launch`` needed: tracker, demo camera and client in one process.

    demo [--duration 10] [--device auto|cpu|cuda] [--weights PATH] [--width 640 --height 480]
         [--fps 30] [--ros-args ...]

The main thread spins the tracker node (``/simtrack``), the demo camera (``/demo_camera``, a
synthetic sea with a moving boat) and a client (see :mod:`.node_process`). The client's script
runs in a second thread: it waits for the first frame, sets the target from that frame's true
box through ``/simtrack/set_target``, then prints once a second what the tracker publishes, and
a summary at the end.

Exit status 0 when the tracker started, accepted the target and published detections carrying
the image header; 1 otherwise (the reason is printed). SIGINT (Ctrl-C) or SIGTERM ends the
demo early: it prints the summary so far and exits with status 0.
"""
from __future__ import annotations

import argparse
import collections
import sys
import threading
import time
from typing import Callable, Deque, Dict, List, Optional, Sequence, Tuple

from lifecycle_msgs.msg import State
from lifecycle_msgs.srv import GetState
from rclpy.node import Node
from rclpy.utilities import remove_ros_args
from simtrack_ros_interfaces.msg import TargetStatus, TrackerStatus, TrackingChallenge
from simtrack_ros_interfaces.srv import SetTarget
from vision_msgs.msg import BoundingBox2D, Detection2D

from simtrack_ros.ros.allocator_tuning import tune_allocator_for_images
from simtrack_ros.ros.demo_camera import DemoCameraNode
from simtrack_ros.ros.node_process import NodeProcess
from simtrack_ros.ros.tracker_node import TrackerNode

STARTUP_TIMEOUT_S = 10.0
#: Seconds between two looks of the client's script at what it waits for.
POLL_S = 0.05
STATE_NAMES = {TargetStatus.TRACKING: 'tracking', TargetStatus.UNCERTAIN: 'uncertain',
               TargetStatus.LOST: 'lost'}
RANDOM_WEIGHTS_NOTE = (
    'NOTE: no --weights given, so the tracker ran the demo model with RANDOM weights: the '
    'boxes, confidences and IoU above are not meaningful yet (trained demo weights do not '
    'exist yet). Pass --weights with a SimTrack checkpoint for real tracking.')


def _stamp_key(header) -> int:
    return header.stamp.sec * 1_000_000_000 + header.stamp.nanosec


def _xywh(bbox: BoundingBox2D) -> Tuple[float, float, float, float]:
    return (bbox.center.position.x - bbox.size_x / 2, bbox.center.position.y - bbox.size_y / 2,
            bbox.size_x, bbox.size_y)


def _iou(a: Sequence[float], b: Sequence[float]) -> float:
    """Intersection over union of two (x, y, w, h) boxes, for the report."""
    width = min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0])
    height = min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1])
    inter = max(width, 0.0) * max(height, 0.0)
    union = a[2] * a[3] + b[2] * b[3] - inter
    return inter / union if union > 0 else 0.0


class DemoClient(Node):
    """Sets the target from the first true box and records what the tracker publishes."""

    def __init__(self, tracker_name: str, truth_topic: str, **kwargs) -> None:
        super().__init__('demo_client', **kwargs)
        self.truths: Dict[int, Detection2D] = {}
        self.latest_truth: Optional[Detection2D] = None
        self._truth_order: Deque[int] = collections.deque()
        self.first_truth = threading.Event()
        self.detections: List[Tuple[float, Detection2D]] = []
        self.latest_status: Optional[TrackerStatus] = None
        self.latest_challenge: Optional[TrackingChallenge] = None
        self.create_subscription(Detection2D, truth_topic, self._on_truth, 10)
        self.create_subscription(Detection2D, f'{tracker_name}/detection', self._on_detection,
                                 10)
        self.create_subscription(TrackerStatus, f'{tracker_name}/status', self._on_status, 10)
        self.create_subscription(TrackingChallenge, f'{tracker_name}/challenge',
                                 self._on_challenge, 10)
        self.set_target = self.create_client(SetTarget, f'{tracker_name}/set_target')
        self.get_state = self.create_client(GetState, f'{tracker_name}/get_state')

    def _on_truth(self, msg: Detection2D) -> None:
        key = _stamp_key(msg.header)
        self.truths[key] = msg
        self.latest_truth = msg
        self._truth_order.append(key)
        while len(self._truth_order) > 600:
            self.truths.pop(self._truth_order.popleft(), None)
        self.first_truth.set()

    def _on_detection(self, msg: Detection2D) -> None:
        self.detections.append((time.monotonic(), msg))

    def _on_status(self, msg: TrackerStatus) -> None:
        self.latest_status = msg

    def _on_challenge(self, msg: TrackingChallenge) -> None:
        self.latest_challenge = msg

    def iou(self, detection: Detection2D) -> Optional[float]:
        """Return the IoU with the true box of the same frame (None: frame unknown)."""
        truth = self.truths.get(_stamp_key(detection.header))
        return None if truth is None else _iou(_xywh(detection.bbox), _xywh(truth.bbox))

    def has_image_header(self, detection: Detection2D) -> bool:
        """Whether the detection carries the header of a frame the camera published."""
        truth = self.truths.get(_stamp_key(detection.header))
        return truth is not None and truth.header.frame_id == detection.header.frame_id


def _wait_until(ready: Callable[[], bool], deadline: float, stopping: threading.Event) -> bool:
    """Poll ``ready`` until it is true (True), or until the deadline or a stop (False)."""
    while not ready():
        if time.monotonic() >= deadline or stopping.wait(POLL_S):
            return False
    return True


def _call(client, request, deadline: float, stopping: threading.Event):
    """Call a service from outside the executor thread; None on timeout or stop."""
    future = client.call_async(request)
    if not _wait_until(future.done, deadline, stopping):
        client.remove_pending_request(future)
        return None
    return future.result()


def _set_target(client: DemoClient, deadline: float,
                stopping: threading.Event) -> Tuple[bool, str]:
    """Set the target from the newest true box, retrying until the tracker accepts it."""
    for service in (client.get_state, client.set_target):
        if not _wait_until(service.service_is_ready, deadline, stopping):
            return False, f'the tracker offered no {service.srv_name} service'
    state = _call(client.get_state, GetState.Request(), deadline, stopping)
    if state is None or state.current_state.id != State.PRIMARY_STATE_ACTIVE:
        label = state.current_state.label if state is not None else 'unknown'
        return False, f'the tracker node is {label}, not active (see its log above)'
    if not _wait_until(client.first_truth.is_set, deadline, stopping):
        return False, 'no frame arrived from the demo camera'
    message = 'no answer'
    while time.monotonic() < deadline and not stopping.is_set():
        truth = client.latest_truth
        request = SetTarget.Request(header=truth.header, bbox=truth.bbox, target_id='boat')
        response = _call(client.set_target, request, deadline, stopping)
        if response is not None and response.success:
            return True, f'target {response.target_id!r} set: {response.message}'
        message = response.message if response is not None else 'no answer'
        stopping.wait(0.5)
    return False, f'set_target failed: {message}'


def _challenge_text(challenge: Optional[TrackingChallenge]) -> str:
    if challenge is None:
        return 'classes: -'
    if challenge.challenge == TrackingChallenge.UNKNOWN or not challenge.class_names:
        return 'classes: UNKNOWN (untrained head)'
    return f'class {challenge.class_names[challenge.challenge]} {challenge.confidence:.2f}'


def _report_line(second: int, client: DemoClient, seen: int) -> str:
    detections = client.detections
    line = f'[{second:3d} s] frames {len(detections):4d} (+{len(detections) - seen:2d})'
    status = client.latest_status
    target = status.targets[0] if status is not None and status.targets else None
    if target is None:
        return line + ' | no target status yet'
    iou = client.iou(detections[-1][1]) if detections else None
    state = STATE_NAMES.get(target.state, str(target.state))
    return ' | '.join([
        line, f'{state:9s}', f'conf {target.confidence:.2f}',
        'IoU  -  ' if iou is None else f'IoU {iou:.2f}', _challenge_text(client.latest_challenge),
        f'latency {target.frame_age_ms:5.1f} ms (inference {target.processing_time_ms:5.1f} ms)'])


def _run(client: DemoClient, options: argparse.Namespace,
         stopping: threading.Event) -> Tuple[bool, str]:
    """Run the client's script: set the target, report once a second, sum up; end on a stop."""
    ok, message = _set_target(client, time.monotonic() + STARTUP_TIMEOUT_S, stopping)
    if stopping.is_set():
        return False, 'stopped before tracking started'
    print(message, flush=True)
    if not ok:
        return False, message
    start, seen = time.monotonic(), 0
    for second in range(1, max(round(options.duration), 1) + 1):
        if stopping.wait(max(start + second - time.monotonic(), 0.0)):
            break
        print(_report_line(second, client, seen), flush=True)
        seen = len(client.detections)
    detections = list(client.detections)
    ious = [iou for iou in (client.iou(d) for _, d in detections) if iou is not None]
    elapsed = detections[-1][0] - detections[0][0] if len(detections) > 1 else 0.0
    fps = (len(detections) - 1) / elapsed if elapsed > 0 else 0.0
    mean_iou = f'{sum(ious) / len(ious):.3f}' if ious else '-'
    print(f'summary: {len(detections)} frames tracked, {fps:.1f} fps, mean IoU {mean_iou} '
          f'over {len(ious)} frames', flush=True)
    if not detections:
        return False, 'the tracker published no detections'
    if not any(client.has_image_header(d) for _, d in detections):
        return False, 'no detection carried the header (stamp, frame_id) of a camera image'
    return True, 'detections carry the image header'


def _parse(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog='demo', description=__doc__.splitlines()[0])
    parser.add_argument('--duration', type=float, default=10.0,
                        help='seconds to track after the target is set (default 10)')
    parser.add_argument('--device', default='auto', help='auto (default), cpu, cuda or cuda:N')
    parser.add_argument('--weights', default='',
                        help='SimTrack checkpoint; default: demo model with random weights')
    parser.add_argument('--width', type=int, default=640, help='image width (default 640)')
    parser.add_argument('--height', type=int, default=480, help='image height (default 480)')
    parser.add_argument('--fps', type=float, default=30.0, help='camera rate (default 30)')
    options = parser.parse_args(argv)
    if options.duration <= 0 or options.fps <= 0:
        parser.error('--duration and --fps must be positive')
    return options


def _parameter_args(options: argparse.Namespace) -> List[str]:
    """ROS arguments that set the nodes' parameters from the command-line options."""
    values = {'simtrack:device': options.device, 'demo_camera:width': options.width,
              'demo_camera:height': options.height, 'demo_camera:fps': float(options.fps)}
    if options.weights:
        values['simtrack:weights'] = options.weights
    return ['--ros-args', *(a for k, v in values.items() for a in ('-p', f'{k}:={v}')), '--']


def main(argv: Optional[List[str]] = None) -> int:
    """Run the demo; returns the exit status."""
    argv = sys.argv[1:] if argv is None else list(argv)
    options = _parse(remove_ros_args(['demo', *argv])[1:])
    tune_allocator_for_images()
    with NodeProcess('demo', ['demo', *_parameter_args(options), *argv]) as process:
        try:
            tracker = process.add(TrackerNode(context=process.context))
        except Exception as error:  # whatever stops the node from starting ends the demo
            ok, message = False, f'the tracker node did not start: {error}'
        else:
            camera = process.add(DemoCameraNode(context=process.context))
            client = process.add(DemoClient(
                tracker.get_fully_qualified_name(),
                f'{camera.get_fully_qualified_name()}/ground_truth', context=process.context))
            ok, message = process.spin_while(lambda stopping: _run(client, options, stopping))
    if not options.weights:
        print(RANDOM_WEIGHTS_NOTE, flush=True)
    if process.stop_signal is not None:
        print(f'stopped by {process.stop_signal}', flush=True)
        return 0
    print(('OK: ' if ok else 'FAILED: ') + message, file=sys.stdout if ok else sys.stderr,
          flush=True)
    return 0 if ok else 1


if __name__ == '__main__':
    sys.exit(main())
