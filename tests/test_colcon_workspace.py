"""A ROS 2 user's path: the repository cloned into a workspace's src/ builds with colcon."""
from __future__ import annotations

import os
import pathlib
import shutil
import subprocess
import sys

import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]


@pytest.mark.skipif(shutil.which('colcon') is None, reason='colcon is not installed')
def test_colcon_build_of_the_repository(tmp_path: pathlib.Path):
    (tmp_path / 'src').mkdir()
    (tmp_path / 'src' / 'simtrack_ros').symlink_to(REPO)
    env = {k: v for k, v in os.environ.items() if k != '_ROS_WHEELS_BOOTSTRAP_COMPLETE'}
    env['CMAKE_PREFIX_PATH'] = os.pathsep.join(
        p for p in (sys.prefix, env.get('CMAKE_PREFIX_PATH', '')) if p)
    result = subprocess.run(
        ['colcon', 'build', '--event-handlers', 'console_cohesion-',
         '--cmake-args', '-DBUILD_TESTING=OFF', f'-DPython3_EXECUTABLE={sys.executable}'],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    install = tmp_path / 'install'
    # Both packages, and not the fallback vision_msgs (COLCON_IGNORE: the system one is used).
    assert sorted(p.name for p in install.iterdir() if p.is_dir()) == [
        'simtrack_ros', 'simtrack_ros_interfaces']
    executables = install / 'simtrack_ros' / 'lib' / 'simtrack_ros'
    for name in ('tracker_node', 'demo', 'demo_camera', 'convert_checkpoint'):
        assert (executables / name).is_file(), name
    share = install / 'simtrack_ros' / 'share' / 'simtrack_ros'
    assert (share / 'launch' / 'tracker.launch.py').is_file()
    assert (share / 'config' / 'tracker.yaml').is_file()
    assert (install / 'simtrack_ros' / 'share' / 'ament_index' / 'resource_index' / 'packages'
            / 'simtrack_ros').is_file()
    generated = install / 'simtrack_ros_interfaces' / 'share' / 'simtrack_ros_interfaces'
    assert (generated / 'srv' / 'SetTarget.srv').is_file()
