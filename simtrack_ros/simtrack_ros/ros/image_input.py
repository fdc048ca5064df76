"""The node's image subscription: QoS choice (adaptive by default) and transport-loss counting.

Why adaptive: a best-effort subscription (REP-2003's SensorData) accepts reliable and
best-effort publishers alike, but with Fast DDS's default transports every sample larger than
about 0.5 MB (a 640x480 bgr8 frame is 0.9 MB) travels as UDP fragments, and a best-effort
reader drops the whole sample when one fragment is lost, which on a default Linux socket
buffer is nearly always: such a node receives no frames at all. ``image_reliability: auto``
therefore subscribes reliable when every publisher on the topic is reliable (a reliable
reader with depth 1 still only keeps the newest frame), and best effort otherwise or while
there is no publisher yet; the choice is re-checked periodically. Samples the middleware
reports lost are counted and logged with that advice.
"""
from __future__ import annotations

from typing import Any, Callable, Optional

from rclpy.callback_groups import CallbackGroup
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CompressedImage, Image

try:  # Iron and newer
    from rclpy.event_handler import SubscriptionEventCallbacks
except ImportError:  # Humble
    from rclpy.qos_event import SubscriptionEventCallbacks

_THROTTLE_S = 5.0
_POLICIES = {'best_effort': ReliabilityPolicy.BEST_EFFORT,
             'reliable': ReliabilityPolicy.RELIABLE}


class ImageInput:
    """A subscription to ``image`` (or ``image/compressed``) with the node's QoS parameters.

    Args:
        node: the node that owns the subscription.
        callback: called with every received message.
        group: the callback group of the subscription.
        reliability: ``'auto'``, ``'best_effort'`` or ``'reliable'``.
        depth: history depth.
        compressed: subscribe to CompressedImage on ``image/compressed``.
        on_lost: called with the number of samples the middleware newly reports lost.
    """

    def __init__(self, node: Node, callback: Callable[[Any], None], group: CallbackGroup,
                 reliability: str, depth: int, compressed: bool,
                 on_lost: Callable[[int], None]) -> None:
        self._node = node
        self._callback = callback
        self._group = group
        self._requested = reliability
        self._depth = depth
        self._type = CompressedImage if compressed else Image
        self._name = 'image/compressed' if compressed else 'image'
        self._on_lost_count = on_lost
        self._subscription = None
        self.reliability = ''
        self._subscribe('best_effort' if reliability == 'auto' else reliability)
        self.adapt()

    @property
    def topic_name(self) -> str:
        """The resolved topic name (after remapping)."""
        return self._subscription.topic_name

    def describe(self) -> str:
        """Topic, type and QoS in words, for logs."""
        mode = ' (auto)' if self._requested == 'auto' else ''
        return (f'{self.topic_name} ({self._type.__name__}, {self.reliability}{mode}, '
                f'depth {self._depth})')

    def _choose(self) -> str:
        if self._requested != 'auto':
            return self._requested
        publishers = self._node.get_publishers_info_by_topic(self.topic_name)
        if not publishers:
            return self.reliability
        reliable = all(p.qos_profile.reliability == ReliabilityPolicy.RELIABLE
                       for p in publishers)
        return 'reliable' if reliable else 'best_effort'

    def _subscribe(self, reliability: str) -> None:
        qos = QoSProfile(depth=self._depth, history=HistoryPolicy.KEEP_LAST,
                         durability=DurabilityPolicy.VOLATILE,
                         reliability=_POLICIES[reliability])
        events = SubscriptionEventCallbacks(message_lost=self._on_lost)
        self._subscription = self._node.create_subscription(
            self._type, self._name, self._callback, qos, callback_group=self._group,
            event_callbacks=events)
        self.reliability = reliability

    def adapt(self) -> Optional[str]:
        """With ``auto``, re-subscribe if the publishers now call for the other reliability.

        Returns a description of the change, or None.
        """
        wanted = self._choose()
        if wanted == self.reliability:
            return None
        old = self.reliability
        self._node.destroy_subscription(self._subscription)
        self._subscribe(wanted)
        return f'image subscription {self.topic_name}: {old} -> {wanted} (auto, to match ' \
               'the publishers)'

    def _on_lost(self, info: Any) -> None:
        self._on_lost_count(int(info.total_count_change))
        hint = ('set image_reliability to reliable or auto if the camera publishes reliable, '
                'or raise the socket receive buffers (net.core.rmem_max)'
                if self.reliability == 'best_effort' else 'check the network')
        self._node.get_logger().warning(
            f'{info.total_count} image(s) lost in transport on {self.topic_name} '
            f'({self.reliability}); large images over best effort are often dropped whole: '
            f'{hint}', throttle_duration_sec=_THROTTLE_S)

    def destroy(self) -> None:
        """Destroy the subscription."""
        if self._subscription is not None:
            self._node.destroy_subscription(self._subscription)
            self._subscription = None
