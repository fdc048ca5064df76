"""The tracker node's services: ``~/set_target`` and ``~/stop_tracking``.

:class:`TargetServices` serves them for a node through an explicit interface
(:class:`TrackerAccess`): the tracker when it is ready (or why not), a parameter value and the
image topic's name, plus the node's frame buffer. Every request gets an answer that says in
words what happened or exactly why not:

* the services keep every waiting request (``KEEP_ALL`` history), so a burst from many
  clients is queued by the middleware, never dropped silently;
* template initialisations may take at most :data:`SET_TARGET_TIME_SHARE` of the wall time
  over the last :data:`BUDGET_WINDOW_S` seconds; a ``set_target`` beyond that budget is
  answered at once with ``busy``, so a burst drains quickly (replies stay bounded in time)
  and the executor keeps serving images and other requests while the inference thread keeps
  publishing detections;
* an unexpected error in a handler becomes a failed reply, never an exception out of the
  executor.
"""
from __future__ import annotations

import collections
import threading
import time
from typing import Any, Callable, Deque, Optional, Protocol, Tuple

from rclpy.callback_groups import CallbackGroup
from rclpy.node import Node
from rclpy.qos import HistoryPolicy, qos_profile_services_default, QoSProfile
from simtrack_ros_interfaces.srv import SetTarget, StopTracking

from simtrack_ros.ros.frame_buffer import FrameBuffer
from simtrack_ros.ros.image_conversion import ImageConversionError, LazyFrame
from simtrack_ros.ros.stamps import to_nanoseconds
from simtrack_ros.tracking import Tracker

#: Requests wait in the middleware until served, however many arrive (no silent drops).
SERVICE_QOS = QoSProfile(depth=0, history=HistoryPolicy.KEEP_ALL,
                         reliability=qos_profile_services_default.reliability,
                         durability=qos_profile_services_default.durability)
#: Most of the wall time that set_target template initialisations may take.
SET_TARGET_TIME_SHARE = 0.5
#: Window (seconds) over which that share is measured.
BUDGET_WINDOW_S = 1.0


class TrackerAccess(Protocol):
    """What the services need from their node."""

    def ready_tracker(self) -> Tuple[Optional[Tracker], str]:
        """Return the tracker when targets can be set, else None and why not."""

    def parameter(self, name: str) -> Any:
        """Return the current value of a node parameter."""

    def input_topic(self) -> str:
        """Return the image topic's name (for replies)."""


class TimeBudget:
    """Share of wall time that a kind of work may take, over a sliding window."""

    def __init__(self, share: float, window_s: float,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.share, self.window_s = share, window_s
        self._clock = clock
        self._spans: Deque[Tuple[float, float]] = collections.deque()
        self._lock = threading.Lock()

    def _spent(self, now: float) -> float:
        start = now - self.window_s
        while self._spans and self._spans[0][1] <= start:
            self._spans.popleft()
        return sum(end - max(begin, start) for begin, end in self._spans)

    def used(self) -> float:
        """Share of the window spent so far (0..1)."""
        with self._lock:
            return self._spent(self._clock()) / self.window_s

    def allows(self) -> bool:
        """Whether more work may start now."""
        return self.used() < self.share

    def spend(self, begin: float, end: float) -> None:
        """Record work that ran from ``begin`` to ``end`` (clock seconds)."""
        with self._lock:
            self._spans.append((begin, end))


class TargetServices:
    """``~/set_target`` and ``~/stop_tracking`` of ``node`` (see the module docstring).

    Args:
        node: the node that owns the services.
        access: the tracker, parameters and topic name (the node itself).
        frames: recent frames, looked up by the stamp of a set_target request.
        group: callback group of both services.
    """

    def __init__(self, node: Node, access: TrackerAccess, frames: FrameBuffer[LazyFrame],
                 group: CallbackGroup) -> None:
        self._node = node
        self._access = access
        self._frames = frames
        self.budget = TimeBudget(SET_TARGET_TIME_SHARE, BUDGET_WINDOW_S)
        self.busy_replies = 0
        self._services = [
            node.create_service(SetTarget, '~/set_target', self._guarded(self._on_set_target),
                                qos_profile=SERVICE_QOS, callback_group=group),
            node.create_service(StopTracking, '~/stop_tracking',
                                self._guarded(self._on_stop_tracking), qos_profile=SERVICE_QOS,
                                callback_group=group)]

    def _guarded(self, handler: Callable[[Any, Any], Any]) -> Callable[[Any, Any], Any]:
        """Wrap a service handler so an unexpected error is answered, never raised.

        rclpy re-raises a callback's exception out of the executor, which would end the node;
        e.g. running out of (GPU) memory while cutting a huge template must not do that.
        """
        def serve(request: Any, response: Any) -> Any:
            try:
                return handler(request, response)
            except Exception as exc:  # noqa: B902 - any failure becomes a reply
                response.success = False
                response.message = f'internal error: {type(exc).__name__}: {exc}'
                self._node.get_logger().error(f'{handler.__name__}: {response.message}')
                return response
        return serve

    def _on_set_target(self, request: SetTarget.Request, response: SetTarget.Response
                       ) -> SetTarget.Response:
        response.success = False
        response.target_id = request.target_id
        tracker, reason = self._access.ready_tracker()
        if tracker is None:
            response.message = reason
            return response
        bbox = request.bbox
        cx, cy = bbox.center.position.x, bbox.center.position.y
        width, height = bbox.size_x, bbox.size_y
        described = f'bbox centre ({cx}, {cy}) size {width} x {height}'
        if not self.budget.allows():
            self.busy_replies += 1
            response.message = (
                f'busy: set_target requests used {self.budget.used():.0%} of the last '
                f'{BUDGET_WINDOW_S:g} s (limit {SET_TARGET_TIME_SHARE:.0%}); try again shortly')
            return response
        found = self._frames.lookup(to_nanoseconds(request.header.stamp))
        if found is None:
            response.message = f'no image received yet on {self._access.input_topic()}'
            return response
        max_age_s = float(self._access.parameter('max_template_age_s'))
        if found.kind == 'newest' and found.received_s_ago > max_age_s:
            response.message = (
                f'{found.message}, but it arrived {found.received_s_ago:.1f} s ago (more than '
                f'max_template_age_s={max_age_s:g}): is {self._access.input_topic()} still '
                'publishing?')
            return response
        try:
            frame = found.frame.rgb()
        except ImageConversionError as exc:
            response.message = f'{found.message}, but that image is unusable: {exc}'
            return response
        box = (cx - width / 2.0, cy - height / 2.0, width, height)
        begin = time.monotonic()
        try:  # the box is checked once, by the tracker (crop.validate_box)
            target_id = tracker.initialize(frame, box, request.target_id or None,
                                           max_targets=int(self._access.parameter('max_targets')))
        except ValueError as exc:
            response.message = f'{described}: {exc}'
            return response
        finally:
            self.budget.spend(begin, time.monotonic())
        response.success = True
        response.target_id = target_id
        response.message = f'tracking {target_id}; {found.message}'
        if bbox.center.theta != 0.0:
            response.message += (f'; bbox theta {bbox.center.theta} ignored (the tracker '
                                 'uses axis-aligned boxes)')
        self._node.get_logger().info(f'set_target: {response.message} ({described})')
        return response

    def _on_stop_tracking(self, request: StopTracking.Request, response: StopTracking.Response
                          ) -> StopTracking.Response:
        target_id = request.target_id
        tracker, reason = self._access.ready_tracker()
        if tracker is None:
            response.success = not target_id
            response.message = (f'no targets: {reason}' if not target_id else
                                f'unknown target id {target_id!r}: no targets ({reason})')
            return response
        if not target_id:
            ids = tracker.clear()
            response.success = True
            response.message = (f'stopped {len(ids)} target(s): {", ".join(ids)}' if ids
                                else 'no targets were being tracked')
        else:
            try:
                tracker.remove(target_id)
            except KeyError as exc:
                response.success = False
                response.message = str(exc.args[0])
                return response
            response.success = True
            response.message = f'stopped {target_id}'
        self._node.get_logger().info(f'stop_tracking: {response.message}')
        return response

    def destroy(self) -> None:
        """Destroy both services."""
        for service in self._services:
            self._node.destroy_service(service)
        self._services = []
