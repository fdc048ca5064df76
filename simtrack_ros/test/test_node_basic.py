"""The tracker node end to end: images in; detections, challenges and status out; services."""
from __future__ import annotations

import math

from lifecycle_msgs.srv import GetState
from node_helpers import compressed, frame, image, set_target_request, TrackerUnderTest
import pytest
from rclpy.parameter import Parameter
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import Image
from simtrack_ros_interfaces.msg import TargetStatus

from simtrack_ros.challenges import CHALLENGE_NAMES, UNKNOWN_ID
from simtrack_ros.ros import result_publisher
from simtrack_ros.ros.messages import TARGET_CLASS_ID


def test_outputs_carry_the_image_header(ros):
    node = TrackerUnderTest(ros, model_config='tiny')       # random weights: head untrained
    target_id = node.start_tracking()
    assert target_id == 'target_1'
    msg = image(frame(seed=1), 2.25, frame_id='bow_camera')
    status = node.publish_and_wait(msg)
    stamp, header = msg.header.stamp, msg.header
    assert ros.wait_for(lambda: any(m.header.stamp == stamp for m in node.out['challenge']))
    assert ros.wait_for(lambda: any(m.header.stamp == stamp for m in node.out['detections']))
    detection = next(m for m in node.out['detection'] if m.header.stamp == stamp)
    array = next(m for m in node.out['detections'] if m.header.stamp == stamp)
    challenge = next(m for m in node.out['challenge'] if m.header.stamp == stamp)
    for message in (status, detection, array, challenge, status.targets[0]):
        assert message.header == header
    assert detection.id == target_id and detection.results[0].hypothesis.class_id == \
        TARGET_CLASS_ID
    assert 0.0 <= detection.results[0].hypothesis.score <= 1.0
    assert detection.bbox.size_x > 0 and detection.bbox.size_y > 0
    assert detection.bbox.center.theta == 0.0
    assert [d.id for d in array.detections] == [target_id]
    assert array.detections[0].bbox == detection.bbox
    # The demo model's class head is untrained: UNKNOWN and no random numbers.
    assert challenge.target_id == target_id and challenge.challenge == UNKNOWN_ID
    assert list(challenge.probabilities) == []
    assert list(challenge.class_names) == list(CHALLENGE_NAMES)     # named even when UNKNOWN
    target = status.targets[0]
    assert target.target_id == target_id and target.frames_tracked >= 1
    assert target.state in (TargetStatus.TRACKING, TargetStatus.UNCERTAIN, TargetStatus.LOST)
    assert target.processing_time_ms > 0 and math.isfinite(target.frame_age_ms)
    assert status.device == 'cpu' and not status.classification_trained
    assert 'demo model' in status.model


def test_no_target_publishes_empty_results(ros):
    node = TrackerUnderTest(ros)
    node.wait_connected()
    status = node.publish_and_wait(image(frame(), 5.0))
    assert list(status.targets) == []
    assert ros.wait_for(lambda: node.out['detections'])
    assert list(node.out['detections'][-1].detections) == []
    assert node.out['detection'] == [] and node.out['challenge'] == []


def test_set_target_cuts_the_template_from_the_stamped_frame(ros):
    node = TrackerUnderTest(ros, frame_buffer_length=10)
    node.wait_connected()
    for second in (1.0, 1.1, 1.2, 1.3):
        node.publish_and_wait(image(frame(seed=int(second * 10)), second))
    exact = node.set_target(set_target_request(160, 120, 40, 30, stamp_s=1.1))
    assert exact.success and 'used the frame with stamp 1.100000000' in exact.message
    nearest = node.set_target(set_target_request(160, 120, 40, 30, stamp_s=1.204))
    assert nearest.success and 'nearest, stamp 1.200000000' in nearest.message
    old = node.set_target(set_target_request(160, 120, 40, 30, stamp_s=0.5))
    assert old.success and 'used the newest frame (stamp 1.300000000)' in old.message
    newest = node.set_target(set_target_request(160, 120, 40, 30, target_id='boat'))
    assert newest.success and newest.target_id == 'boat'
    assert 'zero stamp' in newest.message
    assert node.node._tracker.target_ids == ('target_1', 'target_2', 'target_3', 'boat')


def test_stop_tracking(ros):
    node = TrackerUnderTest(ros)
    node.start_tracking()
    assert node.set_target(set_target_request(100, 100, 30, 30, target_id='buoy')).success
    unknown = node.stop('ghost')
    assert not unknown.success
    assert 'ghost' in unknown.message and 'target_1' in unknown.message \
        and 'buoy' in unknown.message
    one = node.stop('buoy')
    assert one.success and 'buoy' in one.message
    everything = node.stop('')
    assert everything.success and 'target_1' in everything.message
    assert node.stop('').message == 'no targets were being tracked'
    status = node.publish_and_wait(image(frame(), 9.0))
    assert list(status.targets) == []


def test_lifecycle_without_autostart(ros):
    node = TrackerUnderTest(ros, autostart=False)
    state = ros.call(GetState, ros.topic('simtrack/get_state'), GetState.Request())
    assert state.current_state.label == 'unconfigured'
    reply = node.set_target(set_target_request(160, 120, 40, 30))
    assert not reply.success and 'model not loaded' in reply.message
    tracker = node.node
    tracker.trigger_configure()
    reply = node.set_target(set_target_request(160, 120, 40, 30))
    assert not reply.success and 'inactive' in reply.message
    tracker.trigger_activate()
    node.wait_connected()
    reply = node.set_target(set_target_request(160, 120, 40, 30))
    assert not reply.success and reply.message.startswith('no image received yet on ')
    assert ros.topic('image') in reply.message
    node.start_tracking()
    tracker.trigger_deactivate()
    assert not tracker._worker and tracker._input is None
    assert tracker._tracker.target_ids == ()  # deactivate stops tracking and frees the device
    assert all(p.device.type == 'cpu' for p in tracker._tracker.model.parameters())
    reply = node.set_target(set_target_request(160, 120, 40, 30))
    assert not reply.success and 'inactive' in reply.message
    tracker.trigger_activate()
    node.wait_connected()
    target_id = node.start_tracking()
    status = node.publish_and_wait(image(frame(), 30.0))
    assert [t.target_id for t in status.targets] == [target_id]
    tracker.trigger_deactivate()
    tracker.trigger_cleanup()
    assert tracker._tracker is None
    state = ros.call(GetState, ros.topic('simtrack/get_state'), GetState.Request())
    assert state.current_state.label == 'unconfigured'


def test_debug_image_only_while_subscribed(ros, monkeypatch):
    drawn = []
    real_draw = result_publisher.draw

    def counting_draw(rgb, results):
        drawn.append(len(results))
        return real_draw(rgb, results)
    monkeypatch.setattr(result_publisher, 'draw', counting_draw)
    node = TrackerUnderTest(ros)
    node.start_tracking()
    for index in range(3):
        node.publish_and_wait(image(frame(), 2.0 + index))
    assert drawn == []
    debug = ros.subscribe(Image, ros.topic('simtrack/debug_image'))
    assert ros.wait_for(node.node._output.debug_subscribed)
    msg = image(frame(), 6.0, frame_id='mast')
    node.publish_and_wait(msg)
    assert ros.wait_for(lambda: any(m.header.stamp == msg.header.stamp for m in debug))
    out = next(m for m in debug if m.header.stamp == msg.header.stamp)
    assert out.header == msg.header and out.encoding == 'rgb8'
    assert (out.width, out.height) == (msg.width, msg.height)
    assert drawn and drawn[-1] == 1
    node.node.set_parameters([Parameter('publish_debug_image', value=False)])
    count = len(drawn)
    node.publish_and_wait(image(frame(), 7.0))
    assert len(drawn) == count


def test_compressed_input(ros):
    node = TrackerUnderTest(ros, compressed_input=True)
    node.wait_connected()
    rgb = frame(seed=3)
    node.publish_and_wait(compressed(rgb, 1.0))
    reply = node.set_target(set_target_request(160, 120, 40, 30, stamp_s=1.0))
    assert reply.success, reply.message
    msg = compressed(rgb, 2.0)
    status = node.publish_and_wait(msg)
    assert [t.target_id for t in status.targets] == [reply.target_id]
    assert status.header == msg.header


@pytest.mark.parametrize('publisher, requested, expected', [
    (ReliabilityPolicy.RELIABLE, 'auto', 'reliable'),
    (ReliabilityPolicy.BEST_EFFORT, 'auto', 'best_effort'),
    (ReliabilityPolicy.RELIABLE, 'best_effort', 'best_effort'),
])
def test_image_qos(ros, publisher, requested, expected):
    node = TrackerUnderTest(ros, image_reliability=requested, diagnostics_period_s=0.1)
    camera = ros.publisher(Image, ros.topic('image'),
                           QoSProfile(depth=1, reliability=publisher))
    assert ros.wait_for(lambda: node.node._input.reliability == expected
                        and camera.get_subscription_count() > 0)
    assert ros.wait_for(lambda: node.node._input.reliability == expected)
    msg = image(frame(), 3.0)

    def delivered():
        camera.publish(msg)
        return ros.wait_for(lambda: any(s.header.stamp == msg.header.stamp
                                        for s in node.out['status']), 0.5)
    assert ros.wait_for(delivered, timeout=10)
    assert node.node._input.describe().startswith(f'{ros.topic("image")} (Image, {expected}')
