"""The tracker node's per-frame outputs, all with the header of the source image.

``~/detection`` (one Detection2D per target), ``~/detections`` (Detection2DArray),
``~/challenge`` (one TrackingChallenge per target), ``~/status`` (TrackerStatus): reliable,
depth 10. ``~/debug_image`` (rgb8): reliable, depth 1, drawn only while someone subscribes.
"""
from __future__ import annotations

import math
from typing import Optional, Sequence

import numpy as np
from rclpy.node import Node
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import Image
from simtrack_ros_interfaces.msg import TrackerStatus, TrackingChallenge
from std_msgs.msg import Header
from vision_msgs.msg import Detection2D, Detection2DArray

from simtrack_ros.ros import messages
from simtrack_ros.ros.debug_overlay import draw
from simtrack_ros.ros.image_conversion import rgb_to_image
from simtrack_ros.tracking import TargetResult

RESULT_QOS = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE,
                        history=HistoryPolicy.KEEP_LAST)
DEBUG_QOS = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,
                       history=HistoryPolicy.KEEP_LAST)
_NS_PER_MS = 1e6


class ResultPublisher:
    """Publishers of one configured model (created at configure, destroyed at cleanup)."""

    def __init__(self, node: Node, device: str, model: str,
                 classification_trained: bool) -> None:
        self._node = node
        self.device, self.model = device, model
        self.classification_trained = classification_trained
        self._detection = node.create_publisher(Detection2D, '~/detection', RESULT_QOS)
        self._detections = node.create_publisher(Detection2DArray, '~/detections', RESULT_QOS)
        self._challenge = node.create_publisher(TrackingChallenge, '~/challenge', RESULT_QOS)
        self._status = node.create_publisher(TrackerStatus, '~/status', RESULT_QOS)
        self._debug = node.create_publisher(Image, '~/debug_image', DEBUG_QOS)

    def debug_subscribed(self) -> bool:
        """Whether anyone subscribes to the debug image."""
        return self._debug.get_subscription_count() > 0

    def publish(self, header: Header, stamp_ns: int, results: Sequence[TargetResult],
                rgb: Optional[np.ndarray] = None) -> float:
        """Publish one frame's results (and the debug image of ``rgb``); return the frame age.

        The age (now - stamp, ms, by the node's clock) is NaN for a zero stamp.
        """
        detections = [messages.detection(result, header) for result in results]
        for detection in detections:
            self._detection.publish(detection)
        self._detections.publish(messages.detection_array(detections, header))
        for result in results:
            self._challenge.publish(messages.challenge(result, header))
        now_ns = self._node.get_clock().now().nanoseconds
        age_ms = (now_ns - stamp_ns) / _NS_PER_MS if stamp_ns > 0 else math.nan
        self._status.publish(messages.tracker_status(
            results, header, age_ms, device=self.device, model=self.model,
            classification_trained=self.classification_trained))
        if rgb is not None:
            self._debug.publish(rgb_to_image(draw(rgb, results), header))
        return age_ms

    def destroy(self) -> None:
        """Destroy the publishers."""
        for publisher in (self._detection, self._detections, self._challenge, self._status,
                          self._debug):
            self._node.destroy_publisher(publisher)
