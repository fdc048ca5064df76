"""The out-of-the-box demo end to end (tracker, demo camera, client), and its camera's messages.

Stopping it by a signal: see test_shutdown.py.
"""
from __future__ import annotations

import os
import re
import subprocess
import sys

from sensor_msgs.msg import Image

from simtrack_ros.ros.demo_camera import ground_truth_message

DURATION_S = 3
#: Start-up (imports, model) plus the demo's own set-up and shutdown allowance.
TIMEOUT_S = DURATION_S + 90


def _demo_env(domain_id: int) -> dict:
    env = {k: v for k, v in os.environ.items() if k != '_ROS_WHEELS_BOOTSTRAP_COMPLETE'}
    # This session's own domain, so parallel test runs cannot answer the demo's calls.
    env['ROS_DOMAIN_ID'] = str(domain_id)
    env['ROS_AUTOMATIC_DISCOVERY_RANGE'] = 'LOCALHOST'
    return env


def test_ground_truth_message_has_image_header_and_box():
    image = Image(width=640, height=480)
    image.header.frame_id = 'camera'
    image.header.stamp.sec, image.header.stamp.nanosec = 12, 345
    detection = ground_truth_message(image, (100.0, 50.0, 40.0, 20.0))
    assert detection.header.frame_id == 'camera'
    assert (detection.header.stamp.sec, detection.header.stamp.nanosec) == (12, 345)
    assert detection.bbox.center.position.x == 120.0 and detection.bbox.center.position.y == 60.0
    assert (detection.bbox.size_x, detection.bbox.size_y) == (40.0, 20.0)
    assert detection.results[0].hypothesis.score == 1.0


def test_demo_runs_and_tracks(ros_domain_id):
    result = subprocess.run(
        [sys.executable, '-m', 'simtrack_ros.ros.demo', '--duration', str(DURATION_S),
         '--device', 'cpu', '--width', '320', '--height', '240'],
        env=_demo_env(ros_domain_id), capture_output=True, text=True, timeout=TIMEOUT_S)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "target 'boat' set" in result.stdout, output
    summary = re.search(r'summary: (\d+) frames tracked', result.stdout)
    assert summary and int(summary.group(1)) > 0, output
    assert len(re.findall(r'^\[ *\d+ s\] frames', result.stdout, re.MULTILINE)) == DURATION_S
    assert 'RANDOM weights' in result.stdout
    assert 'OK: detections carry the image header' in result.stdout
    # The end of the run, its shutdown included, is clean (no InvalidHandle from a timer).
    assert 'Traceback' not in output and 'Error' not in output, output
