"""Clean shutdown: every way a robot stops a node, sent to real processes while they track.

``tracker_node`` and ``demo_camera`` run as child processes in one process group, as under
``ros2 launch`` or a systemd unit; the camera's images reach the tracker, this process sets a
target and waits until the inference thread publishes detections, then stops both with one of
the ways a robot stops a node. The ``demo`` (tracker, camera and client in one process) is
stopped the same way while it reports. Each process must exit with status 0, say which signal
stopped it, and print no traceback and no error.
"""
from __future__ import annotations

import contextlib
import itertools
import os
from pathlib import Path
import re
import signal
import subprocess
import sys
import time
from typing import Any, Dict, Iterator, List, Tuple

from node_helpers import set_target_request
import pytest
from simtrack_ros_interfaces.srv import SetTarget
from vision_msgs.msg import Detection2D

#: Start-up of a child (imports, demo model) on a busy machine.
START_S = 90.0
#: Longest clean shutdown of a child after the stop signal.
STOP_S = 30.0
#: Seconds between two signals to the same process.
GAP_S = 0.1
#: Output that a clean shutdown never prints.
FAILURE_TEXT = re.compile(r'traceback|error|exception|terminate called|invalidhandle', re.I)
#: Scenario -> (signal to the whole process group or None, the signals each process gets).
STOPS: Dict[str, Tuple[Any, List[signal.Signals]]] = {
    'SIGINT': (None, [signal.SIGINT]),
    'SIGINT twice': (None, [signal.SIGINT, signal.SIGINT]),
    'SIGTERM': (None, [signal.SIGTERM]),
    # systemd (KillSignal=SIGINT) stopping a non-interactive ``ros2 launch``: SIGINT to the
    # whole process group, then the SIGINT that launch forwards to each of its nodes.
    'process group': (signal.SIGINT, [signal.SIGINT]),
}
#: ``tracker_node`` whose every frame first spends a second inside torch (a large model on a
#: slow CPU), so that a stop always finds the inference thread busy.
SLOW_TRACKER = """
import time
import torch
from simtrack_ros.ros.tracker_node import main
from simtrack_ros.tracking import Tracker
track = Tracker.track
def slow_track(self, *args, **kwargs):
    x, start = torch.ones(256, 256), time.monotonic()
    while time.monotonic() - start < 1.0:
        x = torch.mm(x, x).clamp(0, 1)
    return track(self, *args, **kwargs)
Tracker.track = slow_track
main()
"""
_demo_runs = itertools.count()


def _start(python_args: List[str], log: Path, group: int = 0) -> subprocess.Popen:
    """Start ``python python_args`` logging to ``log``, in process group ``group`` (0: new).

    The child inherits the session's ``ROS_DOMAIN_ID`` (see the ``ros_domain_id`` fixture).
    """
    with open(log, 'w') as output:
        return subprocess.Popen(
            [sys.executable, *python_args], stdout=output, stderr=subprocess.STDOUT, text=True,
            preexec_fn=lambda: os.setpgid(0, group))


def _assert_clean_exit(process: subprocess.Popen, log: Path, signal_name: str) -> str:
    """Assert that ``process`` exits with 0, quietly, saying ``signal_name`` stopped it."""
    try:
        returncode = process.wait(STOP_S)
    except subprocess.TimeoutExpired:
        returncode = 'still running'
    output = log.read_text()
    assert returncode == 0, f'{log.name}: exit {returncode}\n{output}'
    failure = FAILURE_TEXT.search(output)
    assert failure is None, f'{log.name}: {failure.group(0)!r} in the output\n{output}'
    assert f'{signal_name}: stopping' in output, f'{log.name}: no stop message\n{output}'
    return output


def _stop_and_check(processes: List[subprocess.Popen], logs: List[Path], stop: str) -> None:
    """Stop the processes the ``stop`` way and assert that each exits cleanly.

    One after the other: the camera's images keep the tracker's inference thread busy while
    the tracker stops.
    """
    group_signal, signals = STOPS[stop]
    if group_signal is not None:
        os.killpg(processes[0].pid, group_signal)
        time.sleep(GAP_S)
    for process, log in zip(processes, logs):
        for index, signum in enumerate(signals):
            if index:
                time.sleep(GAP_S)
            process.send_signal(signum)
        _assert_clean_exit(process, log, signals[0].name)


def _kill(processes: List[subprocess.Popen]) -> None:
    for process in processes:
        if process.poll() is None:
            process.kill()
            process.wait()


@contextlib.contextmanager
def _tracking(ros: Any, tmp_path: Path, tracker: List[str]
              ) -> Iterator[Tuple[List[subprocess.Popen], List[Path]]]:
    """Run ``python tracker`` and ``demo_camera`` in one process group until they track.

    Yields the processes and their logs (tracker first) once the tracker publishes detections
    of a target set through its service; kills what is left at the end.
    """
    ros_args = ['--ros-args', '-r', f'__ns:={ros.namespace}']
    logs = [tmp_path / 'tracker_node.log', tmp_path / 'demo_camera.log']
    processes = [_start([*tracker, *ros_args, '-p', 'device:=cpu'], logs[0])]
    try:
        processes.append(_start(
            ['-m', 'simtrack_ros.ros.demo_camera', *ros_args, '-p', 'width:=320',
             '-p', 'height:=240', '-p', 'fps:=30.0'], logs[1], group=processes[0].pid))
        detections = ros.subscribe(Detection2D, ros.topic('simtrack/detection'))
        request = set_target_request(160, 120, 40, 30)
        deadline = time.monotonic() + START_S
        response = ros.call(SetTarget, ros.topic('simtrack/set_target'), request, START_S)
        while not response.success and time.monotonic() < deadline:
            time.sleep(0.2)
            response = ros.call(SetTarget, ros.topic('simtrack/set_target'), request)
        assert response.success, response.message
        assert ros.wait_for(lambda: len(detections) >= 2, 30.0), 'the tracker never tracked'
        yield processes, logs
    finally:
        _kill(processes)


@pytest.mark.parametrize('stop', list(STOPS))
def test_tracker_and_camera_stop_cleanly_while_tracking(ros, ros_domain_id, tmp_path, stop):
    with _tracking(ros, tmp_path, ['-m', 'simtrack_ros.ros.tracker_node']) as (processes, logs):
        _stop_and_check(processes, logs, stop)


def test_second_sigint_while_the_inference_thread_is_in_torch(ros, ros_domain_id, tmp_path):
    """The second SIGINT lands while the shutdown waits for the inference thread.

    It used to interrupt that wait: the interpreter then exited under a thread inside torch
    and the C++ runtime aborted the process (``terminate called without an active
    exception``, exit -6).
    """
    with _tracking(ros, tmp_path, ['-c', SLOW_TRACKER]) as (processes, logs):
        tracker, camera = processes
        tracker.send_signal(signal.SIGINT)
        time.sleep(3 * GAP_S)  # the frame in progress lasts up to a second more
        tracker.send_signal(signal.SIGINT)
        output = _assert_clean_exit(tracker, logs[0], 'SIGINT')
        assert 'ignored SIGINT while stopping' in output, output
        camera.send_signal(signal.SIGINT)
        _assert_clean_exit(camera, logs[1], 'SIGINT')


@pytest.mark.parametrize('stop', list(STOPS))
def test_demo_stops_cleanly_while_tracking(ros_domain_id, tmp_path, stop):
    log = tmp_path / 'demo.log'
    demo = _start(['-m', 'simtrack_ros.ros.demo', '--duration', '600', '--device', 'cpu',
                   '--width', '320', '--height', '240', '--fps', '15',
                   '--out', str(tmp_path / 'out'), '--ros-args',
                   '-r', f'__ns:=/demo_{os.getpid()}_{next(_demo_runs)}'], log)
    try:
        deadline = time.monotonic() + START_S
        while not re.search(r'^\[ *1 s\] frames', log.read_text(), re.MULTILINE):
            assert demo.poll() is None, log.read_text()
            assert time.monotonic() < deadline, f'the demo never reported\n{log.read_text()}'
            time.sleep(0.2)
        _stop_and_check([demo], [log], stop)
        output = log.read_text()
        assert 'summary:' in output and f'stopped by {STOPS[stop][1][0].name}' in output, output
    finally:
        _kill([demo])


def test_an_error_in_the_work_thread_reaches_the_main_thread(ros_domain_id):
    """``spin_while`` stops spinning when its work fails, and raises that error (exit 1)."""
    program = '\n'.join([
        'from rclpy.node import Node',
        'from simtrack_ros.ros.node_process import NodeProcess',
        'def work(stopping):',
        '    raise ValueError("the work failed")',
        'with NodeProcess("probe", []) as process:',
        '    process.add(Node("probe", context=process.context))',
        '    process.spin_while(work)'])
    result = subprocess.run([sys.executable, '-c', program], capture_output=True, text=True,
                            timeout=START_S)
    assert result.returncode == 1, result.stdout + result.stderr
    assert 'ValueError: the work failed' in result.stderr, result.stderr
