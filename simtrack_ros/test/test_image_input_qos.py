"""The image subscription's QoS: no first frame of a new camera is lost, best effort still works.

The cross-process test runs ``tracker_node`` in a child process, as on a robot; this process
plays the cameras and the client. Its ``diagnostics_period_s`` is long, so only the image
input's own reactions (middleware events, its graph look) can change the subscription in time.
"""
from __future__ import annotations

from pathlib import Path
import re
from typing import Any, List

from node_helpers import (frame, image, set_target_request, start_node_process,
                          stop_node_process, TrackerUnderTest)
import pytest
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import Image
from simtrack_ros_interfaces.msg import TrackerStatus
from simtrack_ros_interfaces.srv import SetTarget

from simtrack_ros.ros import image_input

RELIABLE = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE)
BEST_EFFORT = QoSProfile(depth=1, reliability=ReliabilityPolicy.BEST_EFFORT)
#: A realistic camera frame: 1280x720 bgr8 is 2.7 MB, far above one UDP datagram.
LARGE = frame(1280, 720)
#: Start-up of the child (imports, demo model).
START_S = 60.0


class _RemoteNode:
    """The node in its child process, seen from the test process."""

    def __init__(self, ros: Any, log: Path) -> None:
        self.ros = ros
        self.log = log
        self.topic = ros.topic('image')
        self.status: List[TrackerStatus] = ros.subscribe(TrackerStatus,
                                                         ros.topic('simtrack/status'))

    def subscription_reliability(self) -> List[ReliabilityPolicy]:
        """Return the reliability of the node's image subscription(s), from the graph."""
        return [s.qos_profile.reliability
                for s in self.ros.client.get_subscriptions_info_by_topic(self.topic)]

    def first_frame(self, qos: QoSProfile, rgb: Any, stamp_s: float, resend: bool = False
                    ) -> SetTarget.Response:
        """From a fresh camera: publish one frame once matched, then set a target on its stamp.

        With ``resend`` the frame is published again (same stamp) until it arrives.
        """
        ros = self.ros
        camera = ros.publisher(Image, self.topic, qos)
        try:
            assert ros.wait_for_subscribers(camera), 'the node never matched the camera'
            msg = image(rgb, stamp_s)

            def arrived() -> bool:
                return any(s.header.stamp == msg.header.stamp for s in self.status)
            for _ in range(50 if resend else 1):
                camera.publish(msg)
                if ros.wait_for(arrived, 0.2 if resend else 10.0):
                    break
            assert arrived(), f'the first frame (stamp {stamp_s}) never arrived'
            height, width = rgb.shape[:2]
            return ros.call(SetTarget, ros.topic('simtrack/set_target'), set_target_request(
                width / 2, height / 2, width / 16, height / 12, stamp_s, target_id='boat'))
        finally:
            ros.client.destroy_publisher(camera)


@pytest.fixture
def remote_node(ros, ros_domain_id, tmp_path):
    """Run a tracker node in a child process; yield it once it is active and discovered."""
    log = tmp_path / 'node.log'
    remote = _RemoteNode(ros, log)
    with open(log, 'w') as output:
        process = start_node_process(ros.namespace, output, device='cpu',
                                     diagnostics_period_s=60.0)
    try:
        assert ros.wait_for(lambda: process.poll() is not None or (
            remote.subscription_reliability() and ros.client.count_publishers(
                ros.topic('simtrack/status'))), START_S), 'the node did not start'
        assert process.poll() is None, log.read_text()
        yield remote
    finally:
        stop_node_process(process, 15.0)


def _assert_exact(reply: SetTarget.Response) -> None:
    """Assert the target was set on the very frame the request named."""
    assert reply.success, reply.message
    assert 'used the frame with stamp' in reply.message, reply.message


def test_first_frame_of_every_new_camera_arrives_across_processes(remote_node):
    """Ten fresh reliable cameras (five before, five after a best-effort one), none missed."""
    assert remote_node.subscription_reliability() == [ReliabilityPolicy.RELIABLE]
    stamp_s = 100.0
    for _ in range(5):
        stamp_s += 1.0
        _assert_exact(remote_node.first_frame(RELIABLE, LARGE, stamp_s))

    stamp_s += 1.0
    # A best-effort camera (a small frame: best effort loses large ones whole) gets through.
    _assert_exact(remote_node.first_frame(BEST_EFFORT, frame(), stamp_s, resend=True))
    ros = remote_node.ros
    assert ros.wait_for(lambda: remote_node.subscription_reliability() == [
        ReliabilityPolicy.RELIABLE]), 'not reliable again after the best-effort camera left'

    for _ in range(5):
        stamp_s += 1.0
        _assert_exact(remote_node.first_frame(RELIABLE, LARGE, stamp_s))
    log = remote_node.log.read_text()
    # Whichever sees the best-effort camera first switches: the incompatible-QoS event ('a
    # best-effort publisher appeared') or the graph look on the poll timer ('to match the
    # publishers'); both are the auto mode working.
    assert re.search(r'reliable -> best_effort \(auto, (a best-effort publisher appeared|'
                     r'to match the publishers)\)', log), log
    assert 'best_effort -> reliable (auto, to match the publishers)' in log, log


def test_best_effort_publisher_at_start_and_graph_fallback(ros, monkeypatch):
    """Without the matched event (Humble), the graph look alone returns to reliable."""
    monkeypatch.setattr(image_input, 'MATCHED_EVENT', False)
    camera = ros.publisher(Image, ros.topic('image'), BEST_EFFORT)
    node = TrackerUnderTest(ros, diagnostics_period_s=60.0)
    ros.client.destroy_publisher(node.image_pub)
    node.image_pub = camera
    assert ros.wait_for(lambda: node.node._input.reliability == 'best_effort')
    node.wait_connected()
    node.publish_and_wait(image(frame(), 1.0))
    ros.client.destroy_publisher(camera)
    assert ros.wait_for(lambda: node.node._input.reliability == 'reliable',
                        timeout=3 * image_input.POLL_S)


@pytest.mark.parametrize('requested, best_effort_camera, expected', [
    ('auto', False, 'reliable'),
    ('auto', True, 'best_effort'),
    ('best_effort', False, 'best_effort'),
])
def test_loss_hint_fits_the_subscription(ros, requested, best_effort_camera, expected):
    node = TrackerUnderTest(ros, image_reliability=requested, diagnostics_period_s=60.0)
    if best_effort_camera:
        ros.publisher(Image, ros.topic('image'), BEST_EFFORT)
    node_input = node.node._input
    assert ros.wait_for(lambda: node_input.reliability == expected)
    hint = node_input._loss_hint()
    assert 'network' not in hint
    if expected == 'reliable':
        assert 'faster than they can be transferred' in hint and 'best effort' not in hint
    else:
        assert 'best effort drops a large image whole' in hint
        assert ('make every publisher reliable' in hint) == (requested == 'auto')
        assert ('image_reliability auto or reliable' in hint) == (requested != 'auto')
