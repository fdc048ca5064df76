"""Counters of the tracker node, the /diagnostics status made from them, and its publisher."""
from __future__ import annotations

from dataclasses import dataclass, field, replace
import math
import time
from typing import Callable, Dict, Optional, Tuple

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy.clock import Clock, ClockType
from rclpy.node import Node

from simtrack_ros.ros import messages
from simtrack_ros.ros.result_publisher import RESULT_QOS

#: Seconds without an image (while active) before the status turns WARN.
NO_IMAGE_WARN_S = 5.0


@dataclass
class NodeStats:
    """Cumulative counters (each written by one thread; read by the diagnostics timer)."""

    received: int = 0
    processed: int = 0
    malformed: int = 0
    lost: int = 0
    errors: int = 0
    last_error: str = ''
    tracker_ms_total: float = 0.0
    tracked_frames: int = 0
    age_ms_total: float = 0.0
    aged_frames: int = 0
    last_image: Optional[float] = None
    frame_size: Optional[Tuple[int, int]] = None
    time: float = field(default_factory=time.monotonic)

    def snapshot(self) -> 'NodeStats':
        """Copy the counters, stamped with the current monotonic time."""
        return replace(self, time=time.monotonic())


@dataclass
class NodeState:
    """What the node knows about itself beyond the counters."""

    lifecycle: str
    input_topic: str
    device: str
    model: str
    precision: str
    classification_trained: Optional[bool]
    targets: int
    dropped: int
    load_error: str
    transition_error: str
    demo_model: bool
    worker_alive: bool
    busy_replies: int = 0


def _window_mean(total_now: float, total_then: float, count_now: int, count_then: int) -> float:
    count = count_now - count_then
    return (total_now - total_then) / count if count > 0 else math.nan


def summarize(state: NodeState, now: NodeStats, then: NodeStats
              ) -> Tuple[bytes, str, Dict[str, object]]:
    """Return (level, message, key values) for the period between two snapshots."""
    elapsed = max(now.time - then.time, 1e-9)
    rate = (now.processed - then.processed) / elapsed
    values: Dict[str, object] = {
        'lifecycle state': state.lifecycle,
        'input topic': state.input_topic or 'none (not active)',
        'frame size': ('%dx%d' % (now.frame_size[1], now.frame_size[0])
                       if now.frame_size else 'no frame yet'),
        'processing rate (Hz)': rate,
        'input rate (Hz)': (now.received - then.received) / elapsed,
        'tracker latency (ms)': _window_mean(now.tracker_ms_total, then.tracker_ms_total,
                                             now.tracked_frames, then.tracked_frames),
        'frame age at publish (ms)': _window_mean(now.age_ms_total, then.age_ms_total,
                                                  now.aged_frames, then.aged_frames),
        'frames received': now.received,
        'frames processed': now.processed,
        'dropped frames': state.dropped,
        'images lost in transport': now.lost,
        'malformed images': now.malformed,
        'processing errors': now.errors,
        'last error': now.last_error or 'none',
        'targets': state.targets,
        'set_target busy replies': state.busy_replies,
        'device': state.device or 'none',
        'model': state.model or 'not loaded',
        'precision': state.precision,
        'classification trained': ('unknown (model not loaded)'
                                   if state.classification_trained is None
                                   else state.classification_trained),
        'load error': state.load_error or 'none',
        'transition error': state.transition_error or 'none',
    }
    if state.load_error:
        return DiagnosticStatus.ERROR, f'not configured: {state.load_error}', values
    if state.transition_error:
        return (DiagnosticStatus.ERROR, f'node is {state.lifecycle}: {state.transition_error}',
                values)
    if state.lifecycle == 'active' and not state.worker_alive:
        return DiagnosticStatus.ERROR, 'inference thread stopped', values
    warnings = []
    if state.lifecycle != 'active':
        warnings.append(f'node is {state.lifecycle}')
    elif now.last_image is None or time.monotonic() - now.last_image > NO_IMAGE_WARN_S:
        warnings.append(f'no image on {state.input_topic} for {NO_IMAGE_WARN_S:.0f} s '
                        '(check the topic remap and QoS)')
    if now.lost > then.lost:
        warnings.append(f'{now.lost - then.lost} image(s) lost in transport (see the log)')
    if now.malformed > then.malformed:
        warnings.append(f'{now.malformed - then.malformed} malformed image(s)')
    if now.errors > then.errors:
        warnings.append(f'processing errors: {now.last_error}')
    if state.demo_model:
        warnings.append('box head untrained (demo model or backbone-only weights): boxes are '
                        'not meaningful')
    if state.classification_trained is False:
        warnings.append('classification head untrained (challenge UNKNOWN)')
    if warnings:
        return DiagnosticStatus.WARN, '; '.join(warnings), values
    return DiagnosticStatus.OK, f'tracking {state.targets} target(s) at {rate:.1f} Hz', values


class DiagnosticsPublisher:
    """Publishes a node's status on ``/diagnostics`` every ``period_s``, on steady time.

    Steady time, so /diagnostics keeps coming with use_sim_time before /clock runs (or while
    a bag is paused), when the node most needs to say what it is waiting for.

    Args:
        node: the publishing node (the status is named ``<node name>: tracker``).
        period_s: seconds between two statuses.
        stats: the node's counters (read at every period).
        state: called at every period for what the node knows about itself.
    """

    def __init__(self, node: Node, period_s: float, stats: NodeStats,
                 state: Callable[[], NodeState]) -> None:
        self._node, self._stats, self._state = node, stats, state
        self._snapshot = stats.snapshot()
        self._publisher = node.create_publisher(DiagnosticArray, '/diagnostics', RESULT_QOS)
        self._clock = Clock(clock_type=ClockType.STEADY_TIME)
        self._group = MutuallyExclusiveCallbackGroup()
        self._timer = None
        self.set_period(period_s)

    def set_period(self, period_s: float) -> None:
        """Publish every ``period_s`` seconds from now on."""
        if self._timer is not None:
            self._node.destroy_timer(self._timer)
        self._timer = self._node.create_timer(period_s, self._publish, callback_group=self._group,
                                              clock=self._clock)

    def _publish(self) -> None:
        state = self._state()
        now = self._stats.snapshot()
        level, message, values = summarize(state, now, self._snapshot)
        self._snapshot = now
        self._publisher.publish(messages.diagnostic_array(
            self._node.get_clock().now().to_msg(), f'{self._node.get_name()}: tracker',
            state.device or 'none', level, message, values))
