"""Out-of-the-box demo: the tracker follows vessels through held-out synthetic sea sequences.

    demo [--sequences 4] [--frames 150] [--duration S] [--out runs/demo] [--weights PATH]
         [--search-factor F] [--device auto|cpu|cuda] [--width 640 --height 360] [--fps 30]
         [--seed 374] [--min-auc 0.3] [--ros-args ...]

1. Writes ``--sequences`` maritime sequences with simtrack-synth's generator into a temporary
   folder: dataset seed ``--seed``, split 'test' (the demo weights were trained on seed 2026,
   so these sequences are held out), exact boxes and challenge labels per frame.
2. Spins, in one process, the tracker node (``/simtrack``; the package's demo weights at
   their tuned ``search_factor``, unless ``--weights``; ``--search-factor`` sets it for any
   weights), the demo camera (``/demo_camera``)
   publishing those frames as sensor_msgs/Image at ``--fps`` with each frame's true box, and a
   client. At the first frame of each sequence the client sets the target through
   ``/simtrack/set_target`` with that frame's true box and stamp (and stops the previous
   sequence's target through ``/simtrack/stop_tracking``), then records the detections and
   challenge probabilities the tracker publishes. It prints a line a second (the script runs
   in a second thread, see :mod:`.node_process`).
3. Prints a summary (frames, FPS, success AUC and OP50 against the ground truth, challenge
   accuracy and macro-F1 against the synthetic labels: :mod:`.demo_report`) and writes an
   annotated video, a contact sheet and ``summary.json`` to ``--out``.

Exit status 0 when the tracker tracked; 1 when it clearly failed (no detections, a target
refused, success AUC below ``--min-auc``), with the reason. SIGINT (Ctrl-C) or SIGTERM ends the
demo early: it prints the summary so far and exits with status 0.
"""
from __future__ import annotations

import argparse
import os
from pathlib import Path
import queue
import sys
import tempfile
import threading
import time
from typing import Callable, Dict, List, Optional, Sequence, Tuple

from lifecycle_msgs.msg import State
from lifecycle_msgs.srv import GetState
from rclpy.node import Node
from rclpy.utilities import remove_ros_args
from simtrack_ros_interfaces.msg import TargetStatus, TrackerStatus, TrackingChallenge
from simtrack_ros_interfaces.srv import SetTarget, StopTracking
from vision_msgs.msg import BoundingBox2D, Detection2D

from simtrack_ros.allocator_tuning import tune_allocator_for_images
from simtrack_ros.data.sequences import read_sequence
from simtrack_ros.data.synthetic_dataset import SynthOptions
from simtrack_ros.evaluation.ope import iou_xywh
from simtrack_ros.model import CheckpointError
from simtrack_ros.ros import demo_report, parameters
from simtrack_ros.ros.demo_camera import (DEMO_SEED, DEMO_SPLIT, DemoCameraNode,
                                          generate_sequences, parse_frame_key)
from simtrack_ros.ros.demo_report import FrameOutput, Recording, SequenceRecord
from simtrack_ros.ros.demo_settings import DEMO_SEARCH_FACTOR
from simtrack_ros.ros.model_loading import find_demo_weights, resolve_weights
from simtrack_ros.ros.node_process import NodeProcess
from simtrack_ros.ros.tracker_node import TrackerNode

STARTUP_TIMEOUT_S = 10.0
#: Seconds between two looks of the client's script at what it waits for.
POLL_S = 0.05
#: After the last frame: time left to the tracker for its last results.
END_GRACE_S = 0.5
#: Seconds without a frame from the camera after which the demo ends (camera gone or done).
CAMERA_IDLE_S = 3.0
STATE_NAMES = {TargetStatus.TRACKING: 'tracking', TargetStatus.UNCERTAIN: 'uncertain',
               TargetStatus.LOST: 'lost'}
RANDOM_WEIGHTS_NOTE = (
    'NOTE: the package has no demo weights (weights/demo_small.pth) and no --weights was '
    'given, so the tracker ran a model with RANDOM weights: its boxes and classes are not '
    'meaningful. Pass --weights with a SimTrack checkpoint for real tracking.')


def _stamp_key(header) -> int:
    return header.stamp.sec * 1_000_000_000 + header.stamp.nanosec


def _xywh(bbox: BoundingBox2D) -> Tuple[float, float, float, float]:
    return (bbox.center.position.x - bbox.size_x / 2, bbox.center.position.y - bbox.size_y / 2,
            bbox.size_x, bbox.size_y)


class DemoClient(Node):
    """Sets each sequence's target from its first true box and records what the tracker says.

    The camera's true boxes map image stamps to (sequence, frame); a detection or challenge
    counts for a frame when its stamp is one of those frames and its target id is the target
    set for that frame's sequence.
    """

    def __init__(self, tracker_name: str, truth_topic: str, recording: Recording,
                 **kwargs) -> None:
        super().__init__('demo_client', **kwargs)
        self.recording = recording
        self._records = {r.sequence.name: r for r in recording.sequences}
        self._last = recording.sequences[-1]
        self._frames: Dict[int, Tuple[SequenceRecord, int]] = {}
        self._challenges: Dict[Tuple[str, int], TrackingChallenge] = {}
        #: Target id -> the sequence it was set for, and the one tracked now (script thread).
        self.targets: Dict[str, SequenceRecord] = {}
        self.current_target = ''
        #: True boxes of the first frame of each sequence, in the order shown.
        self.starts: 'queue.Queue[Detection2D]' = queue.Queue()
        self.last_frame_seen = threading.Event()
        self.last_truth_at: Optional[float] = None
        self.latest: Optional[Tuple[SequenceRecord, int, FrameOutput]] = None
        self.latest_status: Optional[TrackerStatus] = None
        self.latest_challenge: Optional[TrackingChallenge] = None
        self.detections = 0
        self.create_subscription(Detection2D, truth_topic, self._on_truth, 100)
        self.create_subscription(Detection2D, f'{tracker_name}/detection', self._on_detection,
                                 100)
        self.create_subscription(TrackerStatus, f'{tracker_name}/status', self._on_status, 100)
        self.create_subscription(TrackingChallenge, f'{tracker_name}/challenge',
                                 self._on_challenge, 100)
        self.set_target = self.create_client(SetTarget, f'{tracker_name}/set_target')
        self.stop_tracking = self.create_client(StopTracking, f'{tracker_name}/stop_tracking')
        self.get_state = self.create_client(GetState, f'{tracker_name}/get_state')

    def _on_truth(self, msg: Detection2D) -> None:
        key = parse_frame_key(msg.id)
        record = self._records.get(key[0]) if key is not None else None
        if record is None:
            return
        index = key[1]
        self._frames[_stamp_key(msg.header)] = (record, index)
        record.shown = max(record.shown, index + 1)
        self.last_truth_at = time.monotonic()
        if index == 0:
            self.starts.put(msg)
        if record is self._last and index == len(record.sequence) - 1:
            self.last_frame_seen.set()

    def _frame_of(self, header, target_id: str) -> Optional[Tuple[SequenceRecord, int]]:
        found = self._frames.get(_stamp_key(header))
        if found is None or self.targets.get(target_id) is not found[0]:
            return None
        return found

    def _on_detection(self, msg: Detection2D) -> None:
        found = self._frame_of(msg.header, msg.id)
        if found is None:
            return
        record, index = found
        score = msg.results[0].hypothesis.score if msg.results else 0.0
        output = FrameOutput(_xywh(msg.bbox), float(score))
        record.outputs[index] = output
        record.tracked_s = time.monotonic() - record.started_at
        self.detections += 1
        self.latest = (record, index, output)

    def _on_status(self, msg: TrackerStatus) -> None:
        self.latest_status = msg
        self.recording.inference_ms.extend(
            t.processing_time_ms for t in msg.targets if t.target_id in self.targets)

    def _on_challenge(self, msg: TrackingChallenge) -> None:
        found = self._frame_of(msg.header, msg.target_id)
        if found is None or msg.challenge == TrackingChallenge.UNKNOWN or not msg.probabilities:
            return
        self._challenges[(found[0].sequence.name, found[1])] = msg
        self.latest_challenge = msg

    def finish(self) -> None:
        """Attach the challenge probabilities to the frames' outputs (after spinning)."""
        for (name, index), msg in self._challenges.items():
            output = self._records[name].outputs.get(index)
            if output is None:
                continue
            names = tuple(msg.class_names)
            self.recording.class_names, self.recording.multi_label = names, msg.multi_label
            output.probabilities = [float(p) for p in msg.probabilities]
            output.challenge = (names[msg.challenge], float(msg.confidence))

    def record_of(self, truth: Detection2D) -> SequenceRecord:
        """Return the sequence of a true box from the camera."""
        return self._records[parse_frame_key(truth.id)[0]]


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


def _wait_for_tracker(client: DemoClient, deadline: float,
                      stopping: threading.Event) -> Tuple[bool, str]:
    """Wait for the tracker's services and check that it is active."""
    for service in (client.get_state, client.set_target, client.stop_tracking):
        if not _wait_until(service.service_is_ready, deadline, stopping):
            return False, f'the tracker offered no {service.srv_name} service'
    state = _call(client.get_state, GetState.Request(), deadline, stopping)
    if state is None or state.current_state.id != State.PRIMARY_STATE_ACTIVE:
        label = state.current_state.label if state is not None else 'unknown'
        return False, f'the tracker node is {label}, not active (see its log above)'
    return True, 'tracker active'


def _start_sequence(client: DemoClient, truth: Detection2D, number: int,
                    stopping: threading.Event) -> Tuple[bool, str]:
    """Set the target of a new sequence from its first true box; stop the previous target."""
    record = client.record_of(truth)
    target_id = f'vessel-{number}'
    record.target_id, record.started_at = target_id, time.monotonic()
    client.targets[target_id] = record
    request = SetTarget.Request(header=truth.header, bbox=truth.bbox, target_id=target_id)
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    message = 'no answer'
    while time.monotonic() < deadline and not stopping.is_set():
        response = _call(client.set_target, request, deadline, stopping)
        if response is not None and response.success:
            previous, client.current_target = client.current_target, target_id
            if previous:
                _call(client.stop_tracking, StopTracking.Request(target_id=previous),
                      time.monotonic() + STARTUP_TIMEOUT_S, stopping)
            return True, (f'sequence {number}/{len(client.recording.sequences)} '
                          f'{record.sequence.name} (staged: {", ".join(record.variants)}): '
                          f'{response.message}')
        message = response.message if response is not None else 'no answer'
        if not message.startswith('busy'):
            break
        stopping.wait(0.1)
    record.target_id = ''
    del client.targets[target_id]
    return False, f'set_target for {record.sequence.name} failed: {message}'


def _report_line(second: int, client: DemoClient, seen: int) -> str:
    line = f'[{second:3d} s] frames {client.detections:4d} (+{client.detections - seen:2d})'
    latest, status = client.latest, client.latest_status
    if latest is None or status is None:
        return line + ' | no detection yet'
    record, index, output = latest
    target = next((t for t in status.targets if t.target_id == record.target_id), None)
    iou = float(iou_xywh(output.box, record.sequence.boxes[index])[0])
    challenge = client.latest_challenge
    parts = [line, f'{record.target_id} #{index:3d}', f'conf {output.confidence:.2f}',
             f'IoU {iou:.2f}']
    if challenge is not None:
        parts.append(f'class {challenge.class_names[challenge.challenge]} '
                     f'{challenge.confidence:.2f}')
    if target is not None:
        parts[1:1] = [f'{STATE_NAMES.get(target.state, str(target.state)):9s}']
        parts.append(f'latency {target.frame_age_ms:5.1f} ms (inference '
                     f'{target.processing_time_ms:5.1f} ms)')
    return ' | '.join(parts)


def _run(client: DemoClient, camera: DemoCameraNode, options: argparse.Namespace,
         stopping: threading.Event) -> Tuple[bool, str]:
    """Run the client's script: start the camera, set each sequence's target, report."""
    ok, message = _wait_for_tracker(client, time.monotonic() + STARTUP_TIMEOUT_S, stopping)
    if not ok:
        return ok, message
    camera.play()
    start = time.monotonic()
    ended_at: Optional[float] = None
    second, seen, number = 0, 0, 0
    while not stopping.is_set():
        try:
            truth = client.starts.get(timeout=POLL_S)
        except queue.Empty:
            truth = None
        if truth is not None:
            number += 1
            ok, message = _start_sequence(client, truth, number, stopping)
            print(message, flush=True)
            if not ok:
                return ok, message
        now = time.monotonic()
        if now >= start + second + 1:
            second += 1
            print(_report_line(second, client, seen), flush=True)
            seen = client.detections
        if client.last_truth_at is None:
            if now - start > STARTUP_TIMEOUT_S:
                return False, 'no frame arrived from the demo camera'
            continue
        if client.last_frame_seen.is_set() and ended_at is None:
            ended_at = now
        if ((ended_at is not None and now - ended_at >= END_GRACE_S)
                or now - client.last_truth_at > CAMERA_IDLE_S
                or (options.duration is not None and now - start >= options.duration)):
            break
    return True, 'played'


def _parse(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog='demo', description=__doc__.splitlines()[0])
    parser.add_argument('--sequences', type=int, default=4,
                        help='held-out sequences to generate and track (default 4)')
    parser.add_argument('--frames', type=int, default=150,
                        help='frames per sequence (default 150)')
    parser.add_argument('--duration', type=float, default=None,
                        help='stop after this many seconds (default: when the sequences end)')
    parser.add_argument('--out', default=os.path.join('runs', 'demo'),
                        help='folder for the video, contact sheet and summary.json '
                             '(default runs/demo)')
    parser.add_argument('--device', default='auto', help='auto (default), cpu, cuda or cuda:N')
    parser.add_argument('--weights', default='',
                        help='SimTrack checkpoint (.pth) or exported model (.onnx); default: '
                             "the package's demo weights")
    parser.add_argument('--search-factor', type=float, default=None,
                        help='search crop side / target scale; default: '
                             f'{DEMO_SEARCH_FACTOR:g} (tuned for the demo weights) with the demo '
                             "weights, else the node's default (4, the official value)")
    parser.add_argument('--width', type=int, default=640, help='image width (default 640)')
    parser.add_argument('--height', type=int, default=360, help='image height (default 360)')
    parser.add_argument('--fps', type=float, default=30.0, help='camera rate (default 30)')
    parser.add_argument('--seed', type=int, default=DEMO_SEED,
                        help=f'dataset seed of the sequences (default {DEMO_SEED}; the demo '
                             'weights were trained on seed 2026)')
    parser.add_argument('--min-auc', type=float, default=0.3,
                        help='exit status 1 below this success AUC (default 0.3)')
    options = parser.parse_args(argv)
    if options.sequences < 1 or options.frames < 2:
        parser.error('--sequences must be at least 1 and --frames at least 2')
    if options.fps <= 0 or (options.duration is not None and options.duration <= 0):
        parser.error('--duration and --fps must be positive')
    if options.weights:
        try:
            resolve_weights(options.weights)          # where the node will look for it
        except CheckpointError as error:
            parser.error(f'--weights: {error}')
    # The node's own parameter checks, before anything starts.
    given = {'device': options.device, 'search_factor': options.search_factor}
    for name, value in given.items():
        error = None if value is None else parameters.SPEC_BY_NAME[name].check(value)
        if error is not None:
            parser.error(f'--{name.replace("_", "-")}: {error}')
    return options


def search_factor(options: argparse.Namespace) -> Optional[float]:
    """Return the demo tracker's search factor: given, the demo weights', or None (default)."""
    if options.search_factor is not None:
        return options.search_factor
    return None if options.weights else DEMO_SEARCH_FACTOR


def _parameter_args(options: argparse.Namespace, sequences: Path) -> List[str]:
    """ROS arguments that set the nodes' parameters from the command-line options."""
    values = {'simtrack:device': options.device, 'demo_camera:sequences': str(sequences),
              'demo_camera:loop': 'false', 'demo_camera:fps': float(options.fps)}
    if options.weights:
        values['simtrack:weights'] = options.weights
    factor = search_factor(options)
    if factor is not None:
        values['simtrack:search_factor'] = factor
    return ['--ros-args', *(a for k, v in values.items() for a in ('-p', f'{k}:={v}')), '--']


def _generate(folder: Path, options: argparse.Namespace) -> Recording:
    """Write the held-out sequences (with a progress bar) and return an empty recording."""
    results = generate_sequences(
        folder, options.sequences,
        SynthOptions(width=options.width, height=options.height, frames=options.frames,
                     fps=options.fps), options.seed, lambda text: print(text, flush=True))
    return Recording([SequenceRecord(read_sequence(r.path), r.variants) for r in results])


def _weights_text(options: argparse.Namespace) -> str:
    """Print which weights the tracker runs; return that in short, for the pictures."""
    factor = search_factor(options)
    setting = '' if factor is None else f', search factor {factor:g}'
    if options.weights:
        print(f'tracker weights: {options.weights} (--weights){setting}', flush=True)
        return f'weights {Path(options.weights).name}'
    demo = find_demo_weights()
    if demo is None:
        print(f'tracker weights: RANDOM (the package has no demo weights){setting}', flush=True)
        return 'RANDOM weights'
    print(f"tracker weights: {demo} (the package's demo weights){setting}", flush=True)
    return f'demo weights {demo.name}'


def _outputs(recording: Recording, options: argparse.Namespace, weights: str) -> dict:
    """Score the run, print the summary, write the video, contact sheet and summary.json."""
    summary = demo_report.score(recording)
    summary['weights'] = weights
    for line in demo_report.summary_lines(summary):
        print(line, flush=True)
    if not recording.played():
        return summary
    started = time.monotonic()
    out = Path(options.out)
    out.mkdir(parents=True, exist_ok=True)
    title = f'SimTrack demo, {weights}: {demo_report.headline(summary)}'
    try:
        video, frames = demo_report.write_video(recording, out / 'demo', options.fps)
        sheet = demo_report.write_image(out / 'demo_contact_sheet.jpg',
                                        demo_report.contact_sheet(recording, summary, title))
    except OSError as error:
        print(f'outputs: {error}', file=sys.stderr, flush=True)
    else:
        json_path = demo_report.write_summary(out / 'summary.json', summary)
        print(f'wrote {video} ({frames} frames), {sheet} and {json_path} in '
              f'{time.monotonic() - started:.1f} s', flush=True)
    return summary


def _verdict(summary: dict, options: argparse.Namespace) -> Tuple[bool, str]:
    if not summary['frames_tracked']:
        return False, 'the tracker published no detections'
    if summary['auc'] is None or summary['auc'] < options.min_auc:
        return False, (f'tracking failed: success AUC {demo_report.number(summary["auc"])} '
                       f'is below --min-auc {options.min_auc:g}')
    return True, (f'tracked {summary["frames_tracked"]} frames, success AUC '
                  f'{summary["auc"]:.3f} (>= --min-auc {options.min_auc:g})')


def main(argv: Optional[List[str]] = None) -> int:
    """Run the demo; returns the exit status."""
    started = time.monotonic()
    argv = sys.argv[1:] if argv is None else list(argv)
    options = _parse(remove_ros_args(['demo', *argv])[1:])
    tune_allocator_for_images()
    weights = _weights_text(options)
    with tempfile.TemporaryDirectory(prefix='simtrack_demo_') as folder:
        try:
            recording = _generate(Path(folder), options)
        except (OSError, ValueError) as error:
            print(f'FAILED: the sequences could not be generated: {error}', file=sys.stderr,
                  flush=True)
            return 1
        arguments = _parameter_args(options, Path(folder) / DEMO_SPLIT)
        with NodeProcess('demo', ['demo', *arguments, *argv]) as process:
            try:
                tracker = process.add(TrackerNode(context=process.context))
            except Exception as error:  # whatever stops the node from starting ends the demo
                ok, message = False, f'the tracker node did not start: {error}'
            else:
                camera = process.add(DemoCameraNode(paused=True, context=process.context))
                client = process.add(DemoClient(
                    tracker.get_fully_qualified_name(),
                    f'{camera.get_fully_qualified_name()}/ground_truth', recording,
                    context=process.context))
                ok, message = process.spin_while(
                    lambda stopping: _run(client, camera, options, stopping))
                client.finish()
        summary = _outputs(recording, options, weights)
    if not options.weights and find_demo_weights() is None:
        print(RANDOM_WEIGHTS_NOTE, flush=True)
    if process.stop_signal is not None:
        print(f'stopped by {process.stop_signal}', flush=True)
        return 0
    if ok:
        ok, message = _verdict(summary, options)
    message += f'; the demo took {time.monotonic() - started:.0f} s'
    print(('OK: ' if ok else 'FAILED: ') + message, file=sys.stdout if ok else sys.stderr,
          flush=True)
    return 0 if ok else 1


if __name__ == '__main__':
    sys.exit(main())
