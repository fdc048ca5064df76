"""The set-up is a real ament prefix: simtrack_ros is found the way a ROS 2 workspace finds it.

scripts/setup.sh builds the package with ``colcon build --symlink-install``: the ament index
finds it, its share directory holds package.xml, launch/ and config/, its executables are in
lib/simtrack_ros, and code and data resolve to this source tree (edits need no new set-up).
"""
from __future__ import annotations

import os
import pathlib
import signal
import subprocess
import sys
import threading

from ament_index_python.packages import get_package_prefix, get_package_share_directory

REPO = pathlib.Path(__file__).resolve().parents[1]
PACKAGE = 'simtrack_ros'
SOURCE = REPO / PACKAGE
EXECUTABLES = ('tracker_node', 'demo', 'demo_camera', 'convert_checkpoint')
#: Imports, the demo model and activation on a shared 2-core machine.
START_TIMEOUT_S = 120


def test_ament_index_finds_the_package_and_its_data():
    share = pathlib.Path(get_package_share_directory(PACKAGE))
    assert share == pathlib.Path(get_package_prefix(PACKAGE)) / 'share' / PACKAGE
    data = [SOURCE / 'package.xml', *(SOURCE / 'launch').glob('*.py'),
            *(SOURCE / 'config').glob('*.*'), *(SOURCE / 'weights').glob('*.pth')]
    assert SOURCE / 'launch' / 'tracker.launch.py' in data
    assert SOURCE / 'config' / 'tracker.yaml' in data
    for source in data:
        installed = share / source.relative_to(SOURCE)
        # A link, not a copy: an edited launch or config file takes effect at once.
        assert installed.resolve() == source.resolve(), installed


def test_executables_are_in_the_package_lib_directory():
    lib = pathlib.Path(get_package_prefix(PACKAGE)) / 'lib' / PACKAGE
    for name in EXECUTABLES:
        assert os.access(lib / name, os.X_OK), f'{lib / name} is not an executable'


def test_package_resolves_to_the_source_tree(tmp_path: pathlib.Path):
    # In a fresh interpreter outside the repository, so only the environment's paths count.
    result = subprocess.run(
        [sys.executable, '-c', 'import simtrack_ros.ros.tracker_node as m; print(m.__file__)'],
        cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    imported = pathlib.Path(result.stdout.strip()).resolve()
    assert imported == SOURCE / PACKAGE / 'ros' / 'tracker_node.py'


def test_installed_tracker_node_starts_and_stops(tmp_path: pathlib.Path):
    executable = pathlib.Path(get_package_prefix(PACKAGE)) / 'lib' / PACKAGE / 'tracker_node'
    # No discovery: the node meets no other process, whatever runs on this machine.
    env = {**os.environ, 'ROS_AUTOMATIC_DISCOVERY_RANGE': 'OFF'}
    env.pop('_ROS_WHEELS_BOOTSTRAP_COMPLETE', None)
    process = subprocess.Popen(
        [str(executable), '--ros-args', '-p', 'device:=cpu'], cwd=tmp_path, env=env,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    watchdog = threading.Timer(START_TIMEOUT_S, process.kill)
    watchdog.start()
    lines = []
    try:
        for line in process.stdout:
            lines.append(line)
            if '[simtrack]: active' in line:
                break
        process.send_signal(signal.SIGINT)
        rest, _ = process.communicate(timeout=30)
    finally:
        watchdog.cancel()
        process.kill()
    output = ''.join(lines) + rest
    assert any('[simtrack]: active' in line for line in lines), output
    assert process.returncode == 0, output
    assert 'Traceback' not in output, output
