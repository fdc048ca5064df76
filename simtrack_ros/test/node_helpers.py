"""Helpers for the tracker node tests: images, a started node, its topics and services."""
from __future__ import annotations

import signal
import subprocess
import sys
import time
from typing import Any, Dict, IO, List, Optional, Tuple

import cv2
from diagnostic_msgs.msg import DiagnosticArray
import numpy as np
from rclpy.parameter import Parameter
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CompressedImage, Image
from simtrack_ros_interfaces.msg import TrackerStatus, TrackingChallenge
from simtrack_ros_interfaces.srv import SetTarget, StopTracking
from vision_msgs.msg import Detection2D, Detection2DArray

from simtrack_ros.ros.tracker_node import TrackerNode

WIDTH, HEIGHT = 320, 240
#: QoS of the test image publisher (reliable: nothing lost in the test itself).
IMAGE_QOS = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)


def frame(width: int = WIDTH, height: int = HEIGHT, seed: int = 0) -> np.ndarray:
    """Make a textured RGB frame with a red box near the centre."""
    rng = np.random.default_rng(seed)
    rgb = rng.integers(0, 120, (height, width, 3), dtype=np.uint8)
    rgb[height // 2 - 15:height // 2 + 15, width // 2 - 20:width // 2 + 20] = (230, 20, 20)
    return rgb


def image(rgb: np.ndarray, stamp_s: float, frame_id: str = 'camera',
          encoding: str = 'bgr8') -> Image:
    """Make a bgr8 (or rgb8) Image of ``rgb`` with the given stamp."""
    msg = Image()
    msg.header.stamp.sec = int(stamp_s)
    msg.header.stamp.nanosec = int(round((stamp_s - int(stamp_s)) * 1e9))
    msg.header.frame_id = frame_id
    msg.height, msg.width = rgb.shape[:2]
    msg.encoding = encoding
    msg.step = msg.width * 3
    pixels = rgb[..., ::-1] if encoding == 'bgr8' else rgb
    msg.data = np.ascontiguousarray(pixels).tobytes()
    return msg


def compressed(rgb: np.ndarray, stamp_s: float) -> CompressedImage:
    """Make a PNG CompressedImage of ``rgb``."""
    msg = CompressedImage(format='png')
    msg.header = image(rgb[:2, :2], stamp_s).header
    msg.data = cv2.imencode('.png', rgb[..., ::-1])[1].tobytes()
    return msg


def set_target_request(cx: float, cy: float, w: float, h: float, stamp_s: float = 0.0,
                       target_id: str = '') -> SetTarget.Request:
    """Make a SetTarget request for a box given by centre and size in pixels."""
    request = SetTarget.Request(target_id=target_id)
    request.header.stamp.sec = int(stamp_s)
    request.header.stamp.nanosec = int(round((stamp_s - int(stamp_s)) * 1e9))
    request.bbox.center.position.x = float(cx)
    request.bbox.center.position.y = float(cy)
    request.bbox.size_x = float(w)
    request.bbox.size_y = float(h)
    return request


class TrackerUnderTest:
    """A TrackerNode in the harness namespace, with its outputs collected."""

    def __init__(self, ros: Any, **params: Any) -> None:
        self.ros = ros
        overrides = [Parameter(name, value=value) for name, value in params.items()]
        self.node: TrackerNode = ros.add(TrackerNode(
            context=ros.context, namespace=ros.namespace, parameter_overrides=overrides))
        compressed_input = params.get('compressed_input', False)
        self.image_pub = ros.publisher(CompressedImage if compressed_input else Image,
                                       ros.topic('image/compressed' if compressed_input
                                                 else 'image'), IMAGE_QOS)
        self.out: Dict[str, List[Any]] = {
            name: ros.subscribe(msg_type, ros.topic(f'simtrack/{name}'))
            for name, msg_type in (('detection', Detection2D), ('detections', Detection2DArray),
                                   ('challenge', TrackingChallenge), ('status', TrackerStatus))}

    def wait_connected(self) -> None:
        """Wait until the node's image subscription is matched with our publisher."""
        assert self.ros.wait_for_subscribers(self.image_pub), 'node never subscribed to image'

    def publish(self, msg: Any) -> None:
        """Publish one image message."""
        self.image_pub.publish(msg)

    def publish_and_wait(self, msg: Any, topic: str = 'status', timeout: float = 10.0) -> Any:
        """Publish ``msg`` until an output on ``topic`` carries its stamp; return that output.

        The image subscription is best effort, so a frame is re-sent (same stamp) each second.
        """
        stamp = msg.header.stamp

        def arrived() -> Optional[Any]:
            return next((m for m in reversed(self.out[topic]) if m.header.stamp == stamp), None)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.publish(msg)
            if self.ros.wait_for(arrived, min(1.0, deadline - time.monotonic())):
                return arrived()
        raise AssertionError(f'no {topic} for stamp {stamp} within {timeout} s')

    def publish_and_classify(self, msg: Any) -> Tuple[TrackerStatus, TrackingChallenge]:
        """Publish ``msg``; return the status and the TrackingChallenge carrying its stamp."""
        status = self.publish_and_wait(msg)
        stamp = msg.header.stamp
        assert self.ros.wait_for(lambda: any(c.header.stamp == stamp
                                             for c in self.out['challenge'])), 'no challenge'
        return status, next(c for c in self.out['challenge'] if c.header.stamp == stamp)

    def set_target(self, request: SetTarget.Request) -> SetTarget.Response:
        """Call ~/set_target."""
        return self.ros.call(SetTarget, self.ros.topic('simtrack/set_target'), request)

    def stop(self, target_id: str = '') -> StopTracking.Response:
        """Call ~/stop_tracking."""
        return self.ros.call(StopTracking, self.ros.topic('simtrack/stop_tracking'),
                             StopTracking.Request(target_id=target_id))

    def diagnostics(self, timeout: float = 10.0) -> Dict[str, Any]:
        """Return the node's next /diagnostics status as a dict (level, message, values)."""
        received = self.ros.subscribe(DiagnosticArray, '/diagnostics')
        self.node.set_parameters([Parameter('diagnostics_period_s', value=0.1)])
        name = f'{self.node.get_name()}: tracker'

        def ours() -> List[Any]:
            return [s for m in received for s in m.status if s.name == name]
        assert self.ros.wait_for(ours, timeout), 'no diagnostics from the node'
        status = ours()[-1]
        return {'level': status.level, 'message': status.message,
                **{kv.key: kv.value for kv in status.values}}

    def start_tracking(self, box: Tuple[float, float, float, float] = (160, 120, 40, 30),
                       stamp_s: float = 1.0) -> str:
        """Publish a first frame, wait for it, set a target on it; return the target id."""
        self.wait_connected()
        self.publish_and_wait(image(frame(), stamp_s))
        response = self.set_target(set_target_request(*box, stamp_s=stamp_s))
        assert response.success, response.message
        return response.target_id


def start_node_process(namespace: str, output: IO[str], **params: Any) -> subprocess.Popen:
    """Start ``tracker_node`` in a child process in ``namespace``, logging to ``output``.

    The child inherits the session's ``ROS_DOMAIN_ID`` (see the ``ros_domain_id`` fixture).
    """
    args = [a for name, value in params.items() for a in ('-p', f'{name}:={value}')]
    return subprocess.Popen(
        [sys.executable, '-m', 'simtrack_ros.ros.tracker_node', '--ros-args',
         '-r', f'__ns:={namespace}', *args],
        stdout=output, stderr=subprocess.STDOUT, text=True)


def stop_node_process(process: subprocess.Popen, timeout_s: float = 20.0) -> None:
    """Stop a node started by :func:`start_node_process`: SIGINT, SIGKILL after ``timeout_s``."""
    process.send_signal(signal.SIGINT)
    try:
        process.wait(timeout_s)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
