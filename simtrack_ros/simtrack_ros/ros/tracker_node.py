"""The SimTrack tracker node: a lifecycle node that adapts ROS messages to the Tracker.

Lifecycle: configure validates the parameters and loads the model (on failure the node stays
up, unconfigured, and says why in the log, /diagnostics and service replies); activate
subscribes to ``image`` (or ``image/compressed``) and starts the inference thread; deactivate
stops both; cleanup frees the model. With ``autostart`` (default) the node configures and
activates itself. The image callback only stores the newest frame; the inference thread runs
``Tracker.track`` on the newest one and publishes ``~/detection``, ``~/detections``,
``~/challenge``, ``~/status`` and (while subscribed) ``~/debug_image``, all with the header
of the source image. Services: see :mod:`.node_services`.
"""
from __future__ import annotations

import math
import time
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple
import warnings

from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn
from rclpy.logging import LoggingSeverity

from simtrack_ros.allocator_tuning import tune_allocator_for_images
from simtrack_ros.ros import parameters
from simtrack_ros.ros.frame_buffer import FrameBuffer
from simtrack_ros.ros.image_conversion import ImageConversionError, LazyFrame
from simtrack_ros.ros.image_input import ImageInput
from simtrack_ros.ros.inference_worker import InferenceWorker
from simtrack_ros.ros.model_loading import load_model
from simtrack_ros.ros.node_diagnostics import DiagnosticsPublisher, NodeState, NodeStats
from simtrack_ros.ros.node_process import help_requested, NodeProcess
from simtrack_ros.ros.node_services import TargetServices
from simtrack_ros.ros.result_publisher import ResultPublisher
from simtrack_ros.ros.stamps import format_stamp
from simtrack_ros.tracking import TargetResult, Tracker

NODE_NAME = 'simtrack'
_THROTTLE_S = 5.0
SUCCESS, FAILURE = TransitionCallbackReturn.SUCCESS, TransitionCallbackReturn.FAILURE


class TrackerNode(LifecycleNode):
    """SimTrack tracker node (see the module docstring). ``kwargs`` go to rclpy's Node."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(NODE_NAME, **kwargs)
        self._param_errors = parameters.declare(self)
        self._params: Dict[str, Any] = parameters.read(self)
        for error in self._param_errors.values():
            self.get_logger().error(error)
        self.add_on_set_parameters_callback(
            parameters.set_callback(lambda: self._params, self._apply_parameters))
        self._lifecycle = 'unconfigured'
        self._load_error = ''
        self._transition_error = ''
        self._tracker: Optional[Tracker] = None
        self._model_name = ''
        self._demo_model = False
        self._frames: FrameBuffer[LazyFrame] = FrameBuffer(
            self._params['frame_buffer_length'],
            max_age_ns=int(self._params['max_template_age_s'] * 1e9))
        self._stats = NodeStats()
        self._worker: Optional[InferenceWorker[LazyFrame]] = None
        self._input: Optional[ImageInput] = None
        self._output: Optional[ResultPublisher] = None
        self._image_group = MutuallyExclusiveCallbackGroup()
        self._target_services = TargetServices(self, self, self._frames,
                                               MutuallyExclusiveCallbackGroup())
        self._diagnostics = DiagnosticsPublisher(self, self._params['diagnostics_period_s'],
                                                 self._stats, self._node_state)
        if self._params['autostart']:
            if self.trigger_configure() == SUCCESS:
                if self.trigger_activate() != SUCCESS:
                    self.get_logger().error(
                        'autostart: activate failed; the node stays up (inactive). Fix the '
                        'cause and activate it through the lifecycle services.')
            else:
                self.get_logger().error(
                    'autostart: configure failed; the node stays up (unconfigured). Fix the '
                    'cause and configure it through the lifecycle services.')

    # ---------------------------------------------------------------- lifecycle
    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        errors = list(self._param_errors.values()) + parameters.check(self._params)
        if errors:
            return self._fail_configure('invalid parameters: ' + '; '.join(errors))
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter('always')
                loaded = load_model(self._params['weights'], self._params['model_config'])
                tracker = Tracker(loaded.model, parameters.tracker_options(self._params),
                                  checkpoint=loaded.path)
        except Exception as exc:  # noqa: B902 - CheckpointError, CUDA errors, OOM: stay up
            return self._fail_configure(f'{type(exc).__name__}: {exc}')
        logger = self.get_logger()
        for note in loaded.notes:
            logger.info(note)
        for text in loaded.warnings + [str(w.message) for w in caught]:
            logger.warning(text)
        if not tracker.has_probabilities:
            logger.warning('the classification head has no trained weights: ~/challenge '
                           'publishes challenge=UNKNOWN (255) with empty probabilities')
        self._tracker, self._load_error = tracker, ''
        self._model_name, self._demo_model = loaded.description, not loaded.box_trained
        self._output = ResultPublisher(self, str(tracker.engine.device), self._model_name,
                                       tracker.has_probabilities)
        self._lifecycle = 'inactive'
        engine = tracker.engine
        logger.info(f'configured: {self._model_name}; runtime {engine.describe()}; precision '
                    f'{engine.precision}: {engine.choice.reason}')
        guard = accuracy_guard_report(engine.model, engine.precision)
        if guard is not None:
            (logger.info if guard[0] else logger.warning)(guard[1])
        return SUCCESS

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        return self._guarded_transition('activate', self._activate)

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        return self._guarded_transition('deactivate', self._deactivate)

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        return self._guarded_transition('cleanup', self._cleanup)

    def _activate(self) -> TransitionCallbackReturn:
        try:
            if self._tracker is not None:
                self._tracker.resume()
            self._worker = InferenceWorker(self._process, self._on_worker_error,
                                           self._min_period, name=f'{NODE_NAME}_inference')
            self._worker.start()
            self._input = ImageInput(
                self, self._on_image, self._image_group, self._params['image_reliability'],
                self._params['image_qos_depth'], self._params['compressed_input'],
                self._count_lost)
        except Exception:
            self._stop_input()  # leave nothing half-started behind the failure
            raise
        self._lifecycle = 'active'
        self.get_logger().info(f'active: listening on {self._input.describe()}; set a target '
                               'with ~/set_target')
        return SUCCESS

    def _deactivate(self) -> TransitionCallbackReturn:
        self._stop_input()
        tracker = self._tracker
        if tracker is not None:
            stopped = tracker.suspend()
            self.get_logger().info(
                f'inactive: stopped {len(stopped)} target(s); model moved off '
                f'{tracker.engine.device} until activation')
        self._lifecycle = 'inactive'
        return SUCCESS

    def _cleanup(self) -> TransitionCallbackReturn:
        self._release_model()
        self._lifecycle = 'unconfigured'
        return SUCCESS

    def _guarded_transition(self, name: str, body: Callable[[], TransitionCallbackReturn]
                            ) -> TransitionCallbackReturn:
        """Run a transition; an exception fails it with the reason logged and kept.

        rclpy's lifecycle machinery turns an exception into an error transition without
        logging it, so a failed activation (e.g. CUDA out of memory moving the model back)
        would leave no trace. Here the transition fails instead (the node keeps its state),
        and the reason goes to the log, /diagnostics and set_target replies until the next
        successful transition.
        """
        try:
            result = body()
        except Exception as exc:  # noqa: B902 - CUDA errors, OOM, rclpy errors: stay up
            self._transition_error = f'{name} failed: {type(exc).__name__}: {exc}'
            self.get_logger().error(f'{self._transition_error} (the node stays '
                                    f'{self._lifecycle})')
            return FAILURE
        self._transition_error = ''
        return result

    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._stop_input()
        self._release_model()
        self._lifecycle = 'finalized'
        return SUCCESS

    def on_error(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._stop_input()
        self._release_model()
        self._lifecycle = 'unconfigured'
        return SUCCESS

    def destroy_node(self) -> None:
        """Stop the inference thread and free the model, then destroy the node."""
        self._stop_input()
        self._release_model()
        super().destroy_node()

    def _fail_configure(self, reason: str) -> TransitionCallbackReturn:
        self._load_error = reason
        self.get_logger().error(f'configure failed: {reason}')
        return FAILURE

    def _stop_input(self) -> None:
        image_input, self._input = self._input, None
        if image_input is not None:
            image_input.destroy()
        if self._worker is not None:
            if not self._worker.stop():
                self.get_logger().warning('the inference thread did not stop within 10 s')
            self._worker = None
        self._frames.clear()

    def _release_model(self) -> None:
        if self._output is not None:
            self._output.destroy()
            self._output = None
        tracker, self._tracker = self._tracker, None
        if tracker is not None:
            tracker.close()
        self._model_name = ''

    # ---------------------------------------------------------------- parameters
    def _apply_parameters(self, values: Dict[str, Any], names: Sequence[str]) -> None:
        old, self._params = self._params, dict(values)
        for name in names:
            self._param_errors.pop(name, None)
        if values['frame_buffer_length'] != old['frame_buffer_length']:
            self._frames.resize(values['frame_buffer_length'])
        self._frames.max_age_ns = int(values['max_template_age_s'] * 1e9)
        if values['diagnostics_period_s'] != old['diagnostics_period_s']:
            self._diagnostics.set_period(values['diagnostics_period_s'])
        tracker = self._tracker
        if tracker is not None:
            options = parameters.tracker_options(values)
            tracker.update_options(options.search_factor, options.template_factor,
                                   options.thresholds)
        later = [name for name in ('compressed_input', 'image_reliability', 'image_qos_depth')
                 if values[name] != old[name]]
        if later and self._lifecycle == 'active':
            self.get_logger().info(f'{", ".join(later)} will apply at the next activation')

    def _min_period(self) -> float:
        rate = self._params['max_rate_hz']
        return 1.0 / rate if rate > 0.0 else 0.0

    # ---------------------------------------------------------------- frames
    # ---------------------------------------------------------------- for the services
    def ready_tracker(self) -> Tuple[Optional[Tracker], str]:
        """Return the tracker when targets can be set, else None and why not."""
        tracker = self._tracker
        if self._load_error:
            return None, f'model not loaded: {self._load_error}'
        if tracker is None:
            return None, f'model not loaded: the node is {self._lifecycle} (configure it first)'
        if self._lifecycle != 'active':
            why = f': {self._transition_error}' if self._transition_error else ''
            return None, f'node is {self._lifecycle}, not active (activate it first){why}'
        return tracker, ''

    def parameter(self, name: str) -> Any:
        """Return the current (validated) value of one of the node's parameters."""
        return self._params[name]

    def input_topic(self) -> str:
        """Return the image topic's resolved name, for replies."""
        image_input = self._input
        return image_input.topic_name if image_input else 'the image topic (node not active)'

    def _on_image(self, msg) -> None:
        frame = LazyFrame(msg)
        if self._frames.push(frame.stamp_ns, frame):
            self.get_logger().warning(
                'image stamps went backwards (bag loop or clock reset): cleared the frame '
                'buffer', throttle_duration_sec=_THROTTLE_S)
        self._stats.received += 1
        self._stats.last_image = time.monotonic()
        worker = self._worker
        if worker is not None:
            worker.submit(frame)

    def _process(self, frame: LazyFrame) -> None:
        """Worker thread: convert, track all targets in one forward, publish."""
        tracker, output = self._tracker, self._output
        if tracker is None or output is None:
            return
        debug = self._params['publish_debug_image'] and output.debug_subscribed()
        has_targets = bool(tracker.target_ids)
        rgb = None
        if has_targets or debug or not frame.compressed:
            try:
                rgb = frame.rgb()
            except ImageConversionError as exc:
                self._stats.malformed += 1
                self.get_logger().warning(f'skipping a malformed image: {exc}',
                                          throttle_duration_sec=_THROTTLE_S)
                return
            self._note_frame_size(rgb.shape[:2])
        results: List[TargetResult] = tracker.track(rgb) if has_targets else []
        age_ms = output.publish(frame.header, frame.stamp_ns, results, rgb if debug else None)
        logger = self.get_logger()
        if results and logger.is_enabled_for(LoggingSeverity.DEBUG):
            logger.debug(f'frame {format_stamp(frame.stamp_ns)}: ' + '; '.join(
                f'{r.target_id} {r.state.value} conf {r.confidence:.2f} box '
                f'({r.box[0]:.0f}, {r.box[1]:.0f}, {r.box[2]:.0f}, {r.box[3]:.0f})'
                for r in results) + f' ({results[0].timings["total"]:.1f} ms)')
        stats = self._stats
        stats.processed += 1
        if results:
            stats.tracker_ms_total += results[0].timings.get('total', 0.0)
            stats.tracked_frames += 1
        if math.isfinite(age_ms):
            stats.age_ms_total += age_ms
            stats.aged_frames += 1

    def _note_frame_size(self, size: Sequence[int]) -> None:
        size = (int(size[0]), int(size[1]))
        if self._stats.frame_size not in (None, size):
            old = self._stats.frame_size
            self.get_logger().warning(
                f'image size changed from {old[1]}x{old[0]} to {size[1]}x{size[0]}: target '
                'boxes are clipped to the new frame', throttle_duration_sec=_THROTTLE_S)
        self._stats.frame_size = size

    def _on_worker_error(self, exc: Exception) -> None:
        self._stats.errors += 1
        self._stats.last_error = f'{type(exc).__name__}: {exc}'
        self.get_logger().error(f'frame processing failed (the node keeps running): '
                                f'{self._stats.last_error}', throttle_duration_sec=_THROTTLE_S)

    # ---------------------------------------------------------------- diagnostics
    def _count_lost(self, count: int) -> None:
        self._stats.lost += count

    def _node_state(self) -> NodeState:
        """For each /diagnostics status: describe the node."""
        image_input = self._input
        tracker, worker = self._tracker, self._worker
        engine = tracker.engine if tracker is not None else None
        return NodeState(
            lifecycle=self._lifecycle,
            input_topic=image_input.describe() if image_input else '',
            device=str(engine.device) if engine else '', model=self._model_name,
            precision=engine.precision if engine else self._params['precision'],
            classification_trained=tracker.has_probabilities if tracker else None,
            targets=len(tracker.target_ids) if tracker else 0,
            dropped=worker.dropped if worker else 0, load_error=self._load_error,
            transition_error=self._transition_error,
            demo_model=self._demo_model and tracker is not None,
            worker_alive=worker is not None and worker.running,
            busy_replies=self._target_services.busy_replies)


def accuracy_guard_report(model: Any, precision: str) -> Optional[Tuple[bool, str]]:
    """Say what the accuracy guard found for the exported file the engine runs.

    Returns (whether that is fine, one line): the stored result for this precision
    (``ExportedModel.guard_file``, :mod:`simtrack_ros.evaluation.accuracy_guard`), else that
    fp32 needs none or that a reduced precision is unchecked; None for a PyTorch model.
    """
    if getattr(model, 'guard_file', None) is None:
        return None
    guard_file = model.guard_file(precision)
    from simtrack_ros.evaluation.accuracy_guard import read_guard
    try:
        result = read_guard(guard_file)
    except ValueError as exc:
        return False, f'accuracy guard: {exc}'
    if result is not None and result.precision == precision:
        return result.passed, f'{result.summary()} [{guard_file}]'
    if precision == 'fp32':
        return True, f'accuracy guard: not needed for fp32 ({model.search.name})'
    stored = f' (the stored result is for {result.precision})' if result is not None else ''
    return False, (f'accuracy guard: {model.search.name} at {precision} is unchecked against '
                   f'fp32{stored}; run simtrack-guard on held-out sequences')


def main(args: Optional[List[str]] = None) -> None:
    """Run the tracker node until SIGINT or SIGTERM (console script ``tracker_node``).

    One single-threaded executor spins the node (see :mod:`.node_process`, which also stops
    the inference thread before the context goes). Inference runs in the node's own thread
    and every executor callback is short, so the executor thread answers the services while
    inference runs. The callback groups still let the node run correctly under a
    multi-threaded executor.
    """
    if help_requested(args):
        print('usage: ros2 run simtrack_ros tracker_node [--ros-args -p NAME:=VALUE ... '
              f'-r image:=/camera/image_raw]\n\n{__doc__.splitlines()[0]}\n\nSet a '
              'target with the ~/set_target service (README: Topics, services and '
              f'parameters).\n\n{parameters.help_text()}')
        return
    with NodeProcess('tracker_node', args) as process:
        allocator = tune_allocator_for_images()
        node = process.add(TrackerNode(context=process.context))
        node.get_logger().info(allocator)
        process.spin()


if __name__ == '__main__':
    main()
