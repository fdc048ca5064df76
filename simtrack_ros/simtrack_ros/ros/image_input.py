"""The node's image subscription: QoS chosen from the publishers, and transport-loss reports.

Why not plain best effort: a best-effort subscription (REP-2003's SensorData) accepts reliable
and best-effort publishers alike, but with Fast DDS's default transports every sample larger
than about 0.5 MB (a 640x480 bgr8 frame is 0.9 MB) travels as UDP fragments, and a best-effort
reader drops the whole sample when one fragment is lost, which on a default Linux socket buffer
is nearly always: such a node receives no frames at all.

``image_reliability: auto`` therefore subscribes reliable from the start. A reliable reader
receives every sample a reliable publisher sends once the two are matched, the first frame of a
new camera included (with depth 1 it still keeps only the newest). A reliable reader does not
match a best-effort publisher: when one appears (the middleware's incompatible-QoS event) the
subscription is re-made best effort, which matches every publisher, and when the publishers are
all reliable again, or gone (the matched event, where rclpy has it), it is re-made reliable.
A look at the graph every second backs the events up (Humble has no matched event). Still
lost: what a best-effort publisher sends before the switch, frames of reliable publishers while
a best-effort one shares the topic, and the first frames of a reliable camera that appears
while the subscription is still best effort (moments after the last best-effort one left).
Durability is volatile, which matches volatile and transient-local publishers alike (a
transient-local reader would not match the usual volatile camera); frames sent before a camera
is matched are not replayed. Samples the middleware reports lost are counted and logged with
the likely cause.
"""
from __future__ import annotations

import inspect
import threading
from typing import Any, Callable

from rclpy.callback_groups import CallbackGroup
from rclpy.clock import Clock, ClockType
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CompressedImage, Image

try:  # Iron and newer
    from rclpy.event_handler import SubscriptionEventCallbacks
except ImportError:  # Humble
    from rclpy.qos_event import SubscriptionEventCallbacks

_THROTTLE_S = 5.0
#: Seconds between looks at the graph (with ``auto``), behind the middleware's events.
POLL_S = 1.0
_POLICIES = {'best_effort': ReliabilityPolicy.BEST_EFFORT,
             'reliable': ReliabilityPolicy.RELIABLE}
#: Whether rclpy offers the subscription matched event (Iron and newer).
MATCHED_EVENT = 'matched' in inspect.signature(SubscriptionEventCallbacks).parameters


class ImageInput:
    """A subscription to ``image`` (or ``image/compressed``) with the node's QoS parameters.

    Args:
        node: the node that owns the subscription.
        callback: called with every received message.
        group: the callback group of the subscription, its events and its graph timer.
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
        self._lock = threading.RLock()
        self._subscription = None
        self._timer = None
        self.reliability = ''
        #: The resolved topic name (after remapping).
        self.topic_name = ''
        self._subscribe('reliable' if reliability == 'auto' else reliability)
        if reliability == 'auto':
            self.adapt()
            self._timer = node.create_timer(POLL_S, self.adapt, callback_group=group,
                                            clock=Clock(clock_type=ClockType.STEADY_TIME))

    def describe(self) -> str:
        """Topic, type and QoS in words, for logs."""
        mode = ' (auto)' if self._requested == 'auto' else ''
        return (f'{self.topic_name} ({self._type.__name__}, {self.reliability}{mode}, '
                f'depth {self._depth})')

    def _choose(self) -> str:
        """With ``auto``: reliable unless a publisher on the topic is best effort."""
        if self._requested != 'auto':
            return self._requested
        publishers = self._node.get_publishers_info_by_topic(self.topic_name)
        best_effort = any(p.qos_profile.reliability != ReliabilityPolicy.RELIABLE
                          for p in publishers)
        return 'best_effort' if best_effort else 'reliable'

    def _subscribe(self, reliability: str) -> None:
        qos = QoSProfile(depth=self._depth, history=HistoryPolicy.KEEP_LAST,
                         durability=DurabilityPolicy.VOLATILE,
                         reliability=_POLICIES[reliability])
        events = {'message_lost': self._on_lost, 'incompatible_qos': self._on_incompatible}
        if MATCHED_EVENT:
            events['matched'] = self._on_matched
        self._subscription = self._node.create_subscription(
            self._type, self._name, self._callback, qos, callback_group=self._group,
            event_callbacks=SubscriptionEventCallbacks(**events))
        self.reliability = reliability
        self.topic_name = self._subscription.topic_name

    def adapt(self) -> None:
        """With ``auto``, re-subscribe (and log it) if the publishers call for the other QoS."""
        with self._lock:
            if self._subscription is not None:
                self._switch(self._choose(), 'to match the publishers')

    def _switch(self, wanted: str, why: str) -> None:
        """Re-subscribe with ``wanted`` reliability unless it is the current one."""
        with self._lock:
            if self._subscription is None or wanted == self.reliability:
                return
            old = self.reliability
            self._node.destroy_subscription(self._subscription)
            self._subscribe(wanted)
        self._node.get_logger().info(
            f'image subscription {self.topic_name}: {old} -> {wanted} (auto, {why})')

    def _on_incompatible(self, info: Any) -> None:
        if self._requested == 'auto':
            self._switch('best_effort', 'a best-effort publisher appeared')
            return
        self._node.get_logger().warning(
            f'a publisher on {self.topic_name} offers QoS incompatible with this '
            f'{self.reliability} subscription: no images from it. Set image_reliability to auto '
            'to receive best-effort publishers too', throttle_duration_sec=_THROTTLE_S)

    def _on_matched(self, info: Any) -> None:
        if self._requested == 'auto':
            self.adapt()

    def _on_lost(self, info: Any) -> None:
        self._on_lost_count(int(info.total_count_change))
        self._node.get_logger().warning(
            f'{info.total_count} image(s) lost in transport on {self.topic_name} '
            f'({self.reliability}): {self._loss_hint()}', throttle_duration_sec=_THROTTLE_S)

    def _loss_hint(self) -> str:
        """Say what likely lost samples on the current subscription, and the remedies."""
        shared_memory = ('for a camera on this machine, FASTDDS_DEFAULT_PROFILES_FILE set to '
                         "simtrack_ros's config/fastdds_large_images.xml in its environment "
                         '(images then travel in shared memory, not UDP)')
        if self.reliability == 'reliable':
            return ('the publisher replaced them in its history before they were delivered, '
                    'i.e. images are published faster than they can be transferred. Remedies: '
                    f'{shared_memory}; a lower camera rate or resolution; compressed images; a '
                    'deeper publisher history')
        why, fix = (('a publisher on the topic is best effort, so auto subscribes best effort',
                     'make every publisher reliable') if self._requested == 'auto' else
                    ('image_reliability is best_effort',
                     'image_reliability auto or reliable if every publisher is reliable'))
        return ('best effort drops a large image whole when one of its UDP fragments is lost, '
                f'and {why}. Remedies: {fix}; {shared_memory}; between machines, larger socket '
                'receive buffers (net.core.rmem_max)')

    def destroy(self) -> None:
        """Destroy the subscription and stop following the publishers."""
        with self._lock:
            if self._timer is not None:
                self._node.destroy_timer(self._timer)
                self._timer = None
            if self._subscription is not None:
                self._node.destroy_subscription(self._subscription)
                self._subscription = None
