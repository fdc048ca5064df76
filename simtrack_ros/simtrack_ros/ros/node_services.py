"""The tracker node's services: ``~/set_target`` and ``~/stop_tracking``.

A mixin of :class:`~simtrack_ros.ros.tracker_node.TrackerNode`; it uses the node's
``_tracker`` (guarded by ``_tracker_lock``), ``_frames`` (the frame buffer),
``_frames_tracked``, ``_params``, ``_lifecycle``, ``_load_error``, ``_transition_error`` and
``_input_topic()``.
Every reply says in words what happened or exactly why not. The services keep up to
:data:`SERVICE_QUEUE_DEPTH` waiting requests (ROS's default is 10), so a burst of set_target
calls from many clients is queued, not dropped.
"""
from __future__ import annotations

import math
import threading
from typing import Any, Callable, Dict, Optional

from rclpy.callback_groups import CallbackGroup
from rclpy.qos import qos_profile_services_default, QoSProfile
from simtrack_ros_interfaces.srv import SetTarget, StopTracking

from simtrack_ros.ros.frame_buffer import FrameBuffer
from simtrack_ros.ros.image_conversion import ImageConversionError, LazyFrame
from simtrack_ros.tracking import Tracker


#: Requests a service holds before the middleware drops the oldest (ROS default: 10).
SERVICE_QUEUE_DEPTH = 100
SERVICE_QOS = QoSProfile(depth=SERVICE_QUEUE_DEPTH, history=qos_profile_services_default.history,
                         reliability=qos_profile_services_default.reliability,
                         durability=qos_profile_services_default.durability)


class TargetServices:
    """Service handlers (mixin; see the module docstring)."""

    _tracker: Optional[Tracker]
    _tracker_lock: threading.Lock
    _frames: FrameBuffer[LazyFrame]
    _frames_tracked: Dict[str, int]
    _params: Dict[str, object]
    _lifecycle: str
    _load_error: str
    _transition_error: str

    def _create_services(self, group: CallbackGroup) -> None:
        self.create_service(SetTarget, '~/set_target', self._guarded(self._on_set_target),
                            qos_profile=SERVICE_QOS, callback_group=group)
        self.create_service(StopTracking, '~/stop_tracking',
                            self._guarded(self._on_stop_tracking), qos_profile=SERVICE_QOS,
                            callback_group=group)

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
                self.get_logger().error(f'{handler.__name__}: {response.message}')
                return response
        return serve

    def _not_ready(self) -> Optional[str]:
        """Why targets cannot be set now, or None."""
        if self._load_error:
            return f'model not loaded: {self._load_error}'
        if self._tracker is None:
            return f'model not loaded: the node is {self._lifecycle} (configure it first)'
        if self._lifecycle != 'active':
            why = f': {self._transition_error}' if self._transition_error else ''
            return f'node is {self._lifecycle}, not active (activate it first){why}'
        return None

    def _on_set_target(self, request: SetTarget.Request, response: SetTarget.Response
                       ) -> SetTarget.Response:
        response.success = False
        response.target_id = request.target_id
        reason = self._not_ready()
        if reason:
            response.message = reason
            return response
        bbox = request.bbox
        cx, cy = bbox.center.position.x, bbox.center.position.y
        width, height = bbox.size_x, bbox.size_y
        described = f'bbox centre ({cx}, {cy}) size {width} x {height}'
        if not all(math.isfinite(v) for v in (cx, cy, width, height)):
            response.message = f'{described} contains NaN or infinite values'
            return response
        if width <= 0 or height <= 0:
            response.message = f'{described}: width and height must be positive'
            return response
        stamp = request.header.stamp
        found = self._frames.lookup(int(stamp.sec) * 1_000_000_000 + int(stamp.nanosec))
        if found is None:
            response.message = f'no image received yet on {self._input_topic()}'
            return response
        try:
            frame = found.frame.rgb()
        except ImageConversionError as exc:
            response.message = f'{found.message}, but that image is unusable: {exc}'
            return response
        box = (cx - width / 2.0, cy - height / 2.0, width, height)
        with self._tracker_lock:
            tracker = self._tracker
            if tracker is None:  # cleaned up since the readiness check
                response.message = self._not_ready() or 'model not loaded'
                return response
            ids = tracker.target_ids
            limit = int(self._params['max_targets'])
            if request.target_id not in ids and len(ids) >= limit:
                response.message = (f'already tracking max_targets={limit} targets '
                                    f'({", ".join(ids)}); stop one first')
                return response
            try:
                target_id = tracker.initialize(frame, box, request.target_id or None)
            except ValueError as exc:
                response.message = f'{described}: {exc}'
                return response
            self._frames_tracked[target_id] = 0
        response.success = True
        response.target_id = target_id
        response.message = f'tracking {target_id}; {found.message}'
        if bbox.center.theta != 0.0:
            response.message += (f'; bbox theta {bbox.center.theta} ignored (the tracker '
                                 'uses axis-aligned boxes)')
        self.get_logger().info(f'set_target: {response.message} ({described})')
        return response

    def _on_stop_tracking(self, request: StopTracking.Request, response: StopTracking.Response
                          ) -> StopTracking.Response:
        target_id = request.target_id
        with self._tracker_lock:
            tracker = self._tracker
            if tracker is None:
                response.success = not target_id
                response.message = (f'no targets: {self._not_ready()}' if not target_id else
                                    f'unknown target id {target_id!r}: no targets '
                                    f'({self._not_ready()})')
                return response
            if not target_id:
                ids = tracker.target_ids
                tracker.clear()
                self._frames_tracked.clear()
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
                self._frames_tracked.pop(target_id, None)
                response.success = True
                response.message = f'stopped {target_id}'
        self.get_logger().info(f'stop_tracking: {response.message}')
        return response
