"""The generated interfaces through real rclpy: round trips and vision_msgs wire identity."""
from __future__ import annotations

import json
import math
import os
import time
from typing import Callable, List

from ament_index_python.packages import get_package_share_directory
import pytest
import rclpy
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from simtrack_ros_interfaces.msg import TargetStatus, TrackerStatus, TrackingChallenge
from simtrack_ros_interfaces.srv import SetTarget, StopTracking
from std_msgs.msg import Header
from vision_msgs.msg import (BoundingBox2D, Detection2D, Detection2DArray,
                             ObjectHypothesisWithPose)

from simtrack_ros.challenges import CHALLENGE_NAMES, UNKNOWN_ID

#: RIHS01 hashes of the real vision_msgs 4.1.1 (Kilted toolchain).
VISION_MSGS_HASHES = {
    'Point2D': 'RIHS01_eab0e83f44ab4de92ceaf76dd7d0e7638f2bdd1d16ffbe16c7a136c48e407247',
    'Pose2D': 'RIHS01_b0b5d1d7b4c20dd4fcde3ed1d4b289a919290572007d67a97043814db25d3648',
    'BoundingBox2D': 'RIHS01_008eacbb0cf8f26e83795547bed013eec3675485ef386ec056d80eaaf1c1ce2f',
    'ObjectHypothesis':
        'RIHS01_51da43cec11c01957a64d1e05a24acd18aae7745ec30b74348ad5f6d634f7f90',
    'ObjectHypothesisWithPose':
        'RIHS01_41c12344c0396c48b81df12467c192d99b2a0eb1463c5c37194e4223251c80bc',
    'Detection2D': 'RIHS01_0d12b69df5c593b3455b7346fac8205437a7d4bcb09b9e0e0b2dde787ded38ea',
    'Detection2DArray':
        'RIHS01_214274120007f4a683866481336b70310268cfa107aebe9d594a6acf75bda968',
}


@pytest.fixture
def node():
    """Yield a node in its own rclpy context, with an executor to spin it."""
    os.environ.setdefault('ROS_AUTOMATIC_DISCOVERY_RANGE', 'LOCALHOST')
    context = rclpy.Context()
    rclpy.init(context=context)
    test_node = Node('interfaces_test', context=context)
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(test_node)
    test_node.executor_for_test = executor
    yield test_node
    executor.shutdown()
    test_node.destroy_node()
    rclpy.shutdown(context=context)


def spin_until(node: Node, done: Callable[[], bool], timeout: float = 10.0) -> bool:
    """Spin the node's executor until ``done()`` or the timeout."""
    deadline = time.monotonic() + timeout
    while not done() and time.monotonic() < deadline:
        node.executor_for_test.spin_once(timeout_sec=0.05)
    return done()


def round_trip(node: Node, msg_type, topic: str, message, publish_count: int = 50) -> List:
    """Publish ``message`` until one arrives on a subscription in the same process."""
    received: List = []
    node.create_subscription(msg_type, topic, received.append, 10)
    publisher = node.create_publisher(msg_type, topic, 10)
    for _ in range(publish_count):
        publisher.publish(message)
        if spin_until(node, lambda: bool(received), timeout=0.2):
            break
    assert received, f'nothing received on {topic}'
    return received


def test_vision_msgs_hashes_in_generated_descriptions():
    share = get_package_share_directory('vision_msgs')
    for type_name, expected in VISION_MSGS_HASHES.items():
        with open(os.path.join(share, 'msg', f'{type_name}.json')) as f:
            description = json.load(f)
        hashes = {h['type_name']: h['hash_string'] for h in description['type_hashes']}
        assert hashes[f'vision_msgs/msg/{type_name}'] == expected, type_name


def test_vision_msgs_hashes_on_the_wire(node):
    for type_name in ('Detection2D', 'Detection2DArray'):
        msg_type = {'Detection2D': Detection2D, 'Detection2DArray': Detection2DArray}[type_name]
        topic = f'hash_{type_name.lower()}'
        node.create_publisher(msg_type, topic, 10)
        infos = node.get_publishers_info_by_topic(topic)
        assert len(infos) == 1
        assert str(infos[0].topic_type_hash) == VISION_MSGS_HASHES[type_name]


def _detection(target_id: str) -> Detection2D:
    detection = Detection2D()
    detection.header = Header(frame_id='camera')
    detection.header.stamp.sec = 17
    detection.header.stamp.nanosec = 250
    detection.id = target_id
    detection.bbox = BoundingBox2D()
    detection.bbox.center.position.x = 320.5
    detection.bbox.center.position.y = 240.25
    detection.bbox.size_x = 40.0
    detection.bbox.size_y = 22.0
    hypothesis = ObjectHypothesisWithPose()
    hypothesis.hypothesis.class_id = 'target'
    hypothesis.hypothesis.score = 0.875
    detection.results.append(hypothesis)
    return detection


def test_detection_round_trip(node):
    array = Detection2DArray(header=Header(frame_id='camera'))
    array.detections = [_detection('boat_1'), _detection('boat_2')]
    got = round_trip(node, Detection2DArray, 'detections', array)[0]
    assert [d.id for d in got.detections] == ['boat_1', 'boat_2']
    first = got.detections[0]
    assert first.header.stamp.sec == 17 and first.header.stamp.nanosec == 250
    assert first.bbox.center.position.x == 320.5 and first.bbox.size_y == 22.0
    assert first.results[0].hypothesis.score == 0.875


def test_tracking_challenge_round_trip(node):
    message = TrackingChallenge(header=Header(frame_id='camera'), target_id='boat_1')
    message.challenge = TrackingChallenge.OCCLUSION
    message.confidence = 0.5
    message.class_names = list(CHALLENGE_NAMES)
    message.probabilities = [0.05] * 8 + [0.5, 0.1]
    message.multi_label = True
    got = round_trip(node, TrackingChallenge, 'challenge', message)[0]
    assert got.target_id == 'boat_1' and got.challenge == TrackingChallenge.OCCLUSION
    assert list(got.class_names) == list(CHALLENGE_NAMES)
    assert [round(p, 6) for p in got.probabilities] == [0.05] * 8 + [0.5, 0.1]
    assert got.multi_label is True and math.isclose(got.confidence, 0.5)


def test_status_round_trip(node):
    status = TrackerStatus(header=Header(frame_id='camera'), device='cpu', model='tiny')
    status.targets = [TargetStatus(target_id='a', state=TargetStatus.LOST, confidence=0.125,
                                   processing_time_ms=3.5, frames_tracked=9)]
    got = round_trip(node, TrackerStatus, 'status', status)[0]
    assert got.targets[0].state == TargetStatus.LOST and got.targets[0].frames_tracked == 9
    assert got.device == 'cpu' and got.classification_trained is False


def test_message_constants_match_challenge_classes():
    for class_id, name in enumerate(CHALLENGE_NAMES):
        assert getattr(TrackingChallenge, name.upper()) == class_id
    assert TrackingChallenge.UNKNOWN == UNKNOWN_ID


def test_set_target_and_stop_services(node):
    requests: List = []

    def serve_set_target(request, response):
        requests.append(request)
        response.success = request.bbox.size_x > 0
        response.message = f'box {request.bbox.size_x}x{request.bbox.size_y}'
        response.target_id = request.target_id or 'target_1'
        return response

    def serve_stop(request, response):
        response.success = request.target_id == 'target_1'
        response.message = f'stopped {request.target_id}'
        return response

    node.create_service(SetTarget, 'set_target', serve_set_target)
    node.create_service(StopTracking, 'stop_tracking', serve_stop)
    set_client = node.create_client(SetTarget, 'set_target')
    stop_client = node.create_client(StopTracking, 'stop_tracking')
    assert spin_until(node, set_client.service_is_ready)

    request = SetTarget.Request()
    request.header.stamp.sec = 5
    request.bbox.center.position.x = 100.0
    request.bbox.center.position.y = 80.0
    request.bbox.size_x = 30.0
    request.bbox.size_y = 20.0
    future = set_client.call_async(request)
    assert spin_until(node, future.done)
    response = future.result()
    assert response.success and response.target_id == 'target_1'
    assert response.message == 'box 30.0x20.0'
    assert requests[0].header.stamp.sec == 5 and requests[0].bbox.center.position.y == 80.0

    assert spin_until(node, stop_client.service_is_ready)
    future = stop_client.call_async(StopTracking.Request(target_id='target_1'))
    assert spin_until(node, future.done)
    assert future.result().success and future.result().message == 'stopped target_1'
