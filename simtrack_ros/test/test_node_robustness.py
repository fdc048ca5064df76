"""Bad input never stops the node: every case gets a clear reply or log, and serving goes on."""
from __future__ import annotations

import math
import time

from diagnostic_msgs.msg import DiagnosticStatus
from lifecycle_msgs.srv import GetState
from node_helpers import frame, image, set_target_request, TrackerUnderTest
import pytest
from rclpy.lifecycle import TransitionCallbackReturn
from rclpy.logging import LoggingSeverity
from sensor_msgs.msg import Image
from simtrack_ros_interfaces.srv import SetTarget

from simtrack_ros.ros.node_services import SERVICE_QOS, TimeBudget


def _malformed() -> list:
    good = image(frame(), 0.0)
    short = image(frame(), 3.0)
    short.data = bytes(good.data)[:-7]
    narrow = image(frame(), 4.0)
    narrow.step = 100
    unknown = image(frame(), 5.0)
    unknown.encoding = 'hsv8'
    empty = Image(encoding='bgr8')
    empty.header.stamp.sec = 6
    return [short, narrow, unknown, empty]


def test_malformed_images_are_counted_and_skipped(ros):
    node = TrackerUnderTest(ros)
    target_id = node.start_tracking()
    for count, bad in enumerate(_malformed(), start=1):
        node.publish(bad)
        assert ros.wait_for(lambda: node.node._stats.malformed >= count), bad.encoding
    good = image(frame(), 10.0)
    status = node.publish_and_wait(good)
    assert [t.target_id for t in status.targets] == [target_id]
    values = node.diagnostics()
    assert int(values['malformed images']) >= 4


def test_set_target_rejections_say_why(ros):
    node = TrackerUnderTest(ros)
    node.wait_connected()
    reply = node.set_target(set_target_request(160, 120, 40, 30))
    assert not reply.success and reply.message.startswith('no image received yet on ')
    node.publish_and_wait(image(frame(), 1.0))
    cases = {
        'width and height must be positive': set_target_request(160, 120, 0, 30),
        'must be positive': set_target_request(160, 120, 40, -5),
        'NaN or infinite': set_target_request(math.nan, 120, 40, 30),
        'infinite': set_target_request(160, 120, math.inf, 30),
        'entirely outside the 320x240 image': set_target_request(1000, 120, 40, 30),
        'larger than the 320x240 image': set_target_request(160, 120, 30000, 30000),
    }
    for expected, request in cases.items():
        reply = node.set_target(request)
        assert not reply.success and expected in reply.message, (expected, reply.message)
    assert node.node._tracker.target_ids == ()
    assert node.set_target(set_target_request(160, 120, 40, 30)).success
    rotated = set_target_request(160, 120, 40, 30)
    rotated.bbox.center.theta = 0.3
    reply = node.set_target(rotated)
    assert reply.success and 'theta 0.3 ignored' in reply.message
    tracked = node.node._tracker.target_ids
    reply = node.set_target(set_target_request(160, 120, 30000, 30000, target_id='typo'))
    assert not reply.success and 'larger than the' in reply.message
    status = node.publish_and_wait(image(frame(), 2.0))
    assert [t.target_id for t in status.targets] == list(tracked)


def test_set_target_on_a_malformed_frame_says_so(ros):
    node = TrackerUnderTest(ros)
    node.publish_and_wait(image(frame(), 1.0))
    bad = image(frame(), 3.0)
    bad.step = 100
    node.publish(bad)
    assert ros.wait_for(lambda: node.node._stats.malformed >= 1)
    reply = node.set_target(set_target_request(160, 120, 40, 30, stamp_s=3.0))
    assert not reply.success
    assert 'stamp 3.000000000' in reply.message and 'that image is unusable: step 100' in \
        reply.message, reply.message
    assert node.set_target(set_target_request(160, 120, 40, 30, stamp_s=1.0)).success


def test_resolution_change_mid_stream(ros):
    node = TrackerUnderTest(ros)
    target_id = node.start_tracking(box=(280, 200, 40, 30))
    node.publish_and_wait(image(frame(), 2.0))
    small = image(frame(width=160, height=120), 3.0)
    status = node.publish_and_wait(small)
    assert [t.target_id for t in status.targets] == [target_id]
    assert ros.wait_for(lambda: any(d.header.stamp == small.header.stamp
                                    for d in node.out['detection']))
    box = next(d for d in node.out['detection'] if d.header.stamp == small.header.stamp).bbox
    assert 0 <= box.center.position.x <= 160 and 0 <= box.center.position.y <= 120
    assert node.node._stats.frame_size == (120, 160)
    big = image(frame(width=640, height=480), 4.0)
    assert node.publish_and_wait(big).targets[0].target_id == target_id


def test_time_going_backwards_clears_the_frame_buffer(ros):
    node = TrackerUnderTest(ros)
    target_id = node.start_tracking(stamp_s=100.0)
    node.publish_and_wait(image(frame(), 101.0))
    assert len(node.node._frames) >= 2
    looped = image(frame(), 5.0)
    status = node.publish_and_wait(looped)
    assert status.targets[0].target_id == target_id
    assert len(node.node._frames) == 1
    reply = node.set_target(set_target_request(160, 120, 40, 30, stamp_s=100.0))
    assert reply.success and 'used the newest frame (stamp 5.000000000)' in reply.message


def test_exceptions_in_the_worker_do_not_stop_it(ros, monkeypatch):
    node = TrackerUnderTest(ros)
    target_id = node.start_tracking()
    tracker = node.node._tracker
    real_track = tracker.track
    calls = []

    def failing_once(rgb):
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError('simulated CUDA error')
        return real_track(rgb)
    monkeypatch.setattr(tracker, 'track', failing_once)
    node.publish(image(frame(), 2.0))
    assert ros.wait_for(lambda: node.node._stats.errors == 1)
    assert 'simulated CUDA error' in node.node._stats.last_error
    status = node.publish_and_wait(image(frame(), 3.0))
    assert [t.target_id for t in status.targets] == [target_id]
    values = node.diagnostics()
    assert values['processing errors'] == '1'


def test_set_target_storm(ros):
    """Waves of 40 concurrent requests, four times ROS's default service queue depth."""
    node = TrackerUnderTest(ros, max_targets=3)
    node.start_tracking()
    client = ros.client.create_client(SetTarget, ros.topic('simtrack/set_target'),
                                      qos_profile=SERVICE_QOS)
    assert client.wait_for_service(timeout_sec=5)
    replies = []
    for wave in range(3):
        futures = [client.call_async(set_target_request(150 + i % 8, 120, 30, 30,
                                                        target_id=f'id{(wave + i) % 5}'))
                   for i in range(40)]
        node.publish(image(frame(), 2.0 + wave * 0.1))
        assert ros.wait_for(lambda: all(f.done() for f in futures), timeout=30)
        replies += [f.result() for f in futures]
    assert len(replies) == 120
    refused = [r for r in replies if not r.success]
    # Refused: a fourth target, or (on a loaded machine) busy beyond the time budget.
    assert any('max_targets=3' in r.message for r in refused)
    assert all('max_targets=3' in r.message or r.message.startswith('busy: ') for r in refused)
    assert len(node.node._tracker.target_ids) == 3
    status = node.publish_and_wait(image(frame(), 5.0))
    assert len(status.targets) == 3


def test_diagnostics_report_state(ros):
    node = TrackerUnderTest(ros, model_config='tiny')       # random weights: head untrained
    node.start_tracking()
    values = node.diagnostics()
    assert values['level'] == DiagnosticStatus.WARN  # demo model, untrained head
    assert 'demo model' in values['message'] and 'untrained' in values['message']
    assert values['device'] == 'cpu' and values['targets'] == '1'
    assert values['classification trained'] == 'false' and values['load error'] == 'none'
    assert values['lifecycle state'] == 'active'


def test_unexpected_error_in_set_target_is_answered(ros):
    node = TrackerUnderTest(ros)
    target_id = node.start_tracking()

    def out_of_memory(*_args, **_kwargs):
        raise RuntimeError('CUDA out of memory (simulated)')

    node.node._tracker.initialize = out_of_memory
    reply = node.set_target(set_target_request(100, 80, 30, 20, target_id='second'))
    assert not reply.success
    assert reply.message == 'internal error: RuntimeError: CUDA out of memory (simulated)'
    status = node.publish_and_wait(image(frame(), 20.0))
    assert [t.target_id for t in status.targets] == [target_id]


def test_failed_activation_is_reported_and_recoverable(ros, monkeypatch):
    """An exception in a transition fails it with the reason in the log, diagnostics, replies."""
    node = TrackerUnderTest(ros)
    tracker_node = node.node
    assert tracker_node.trigger_deactivate() == TransitionCallbackReturn.SUCCESS

    def out_of_memory() -> None:
        raise RuntimeError('CUDA out of memory (simulated)')
    monkeypatch.setattr(tracker_node._tracker, 'resume', out_of_memory)
    assert tracker_node.trigger_activate() == TransitionCallbackReturn.FAILURE
    assert tracker_node._worker is None and tracker_node._input is None
    reason = 'activate failed: RuntimeError: CUDA out of memory (simulated)'
    state = ros.call(GetState, ros.topic('simtrack/get_state'), GetState.Request())
    assert state.current_state.label == 'inactive'
    reply = node.set_target(set_target_request(160, 120, 40, 30))
    assert not reply.success and reason in reply.message, reply.message
    values = node.diagnostics()
    assert values['level'] == DiagnosticStatus.ERROR and reason in values['message']
    assert values['transition error'] == reason

    monkeypatch.undo()
    assert tracker_node.trigger_activate() == TransitionCallbackReturn.SUCCESS
    assert tracker_node._transition_error == ''
    node.wait_connected()
    target_id = node.start_tracking()
    status = node.publish_and_wait(image(frame(), 40.0))
    assert [t.target_id for t in status.targets] == [target_id]


def test_diagnostics_run_on_steady_time_before_sim_time_starts(ros):
    """With use_sim_time and no /clock yet, /diagnostics still says what the node waits for."""
    node = TrackerUnderTest(ros, use_sim_time=True)
    assert node.node.get_clock().now().nanoseconds == 0  # nobody publishes /clock here
    values = node.diagnostics()
    assert values['lifecycle state'] == 'active' and 'no image on' in values['message']


def test_set_target_on_a_stale_newest_frame_says_so(ros):
    """A zero stamp uses the newest frame only while it is recent (max_template_age_s)."""
    node = TrackerUnderTest(ros, max_template_age_s=1.5)
    node.wait_connected()
    node.publish_and_wait(image(frame(), 1.0))
    time.sleep(2.0)                                    # the camera went quiet
    reply = node.set_target(set_target_request(160, 120, 40, 30))
    assert not reply.success and 'arrived' in reply.message \
        and 'max_template_age_s=1.5' in reply.message and 'still publishing' in reply.message
    exact = node.set_target(set_target_request(160, 120, 40, 30, stamp_s=1.0))
    assert exact.success, exact.message                # a named frame is still usable
    node.publish_and_wait(image(frame(), 2.0))
    assert node.set_target(set_target_request(160, 120, 40, 30)).success


def test_time_budget_limits_the_share_of_work():
    now = [100.0]
    budget = TimeBudget(share=0.5, window_s=1.0, clock=lambda: now[0])
    assert budget.allows() and budget.used() == 0.0
    budget.spend(99.7, 100.0)                          # 0.3 s of the last second
    assert budget.allows() and budget.used() == pytest.approx(0.3)
    budget.spend(100.0, 100.3)
    now[0] = 100.3
    assert not budget.allows() and budget.used() == pytest.approx(0.6)
    now[0] = 100.9                                     # the first span slides out of the window
    assert budget.allows() and budget.used() == pytest.approx(0.4)
    now[0] = 101.2
    assert budget.used() == pytest.approx(0.1)


def test_debug_level_gives_the_node_debug_lines(ros, capfd):
    node = TrackerUnderTest(ros)
    node.node.get_logger().set_level(LoggingSeverity.DEBUG)
    node.start_tracking()
    capfd.readouterr()
    node.publish_and_wait(image(frame(), 3.0))
    time.sleep(0.2)
    err = capfd.readouterr().err
    assert '[DEBUG]' in err and 'frame 3.000000000: target_1 ' in err, err[-2000:]
