"""Tracker init/track loop with a stand-in model of known output, and with the tiny model."""
from __future__ import annotations

import threading

import numpy as np
import pytest
import torch
from tracking_standin import draw_box, iou, StandInModel, textured_frame

from simtrack_ros.model import build_model
from simtrack_ros.model.config import get_config, SimTrackConfig
from simtrack_ros.tracking import (
    EngineOptions, StateThresholds, TargetResult, TIMING_KEYS, Tracker, TrackerOptions,
    TrackState)

HEIGHT, WIDTH = 240, 320
BOX_TOLERANCE = 1e-4      # px: fp32 rounding of the map-back only
CPU = EngineOptions(device='cpu')


def make_tracker(model=None, **options) -> Tracker:
    options.setdefault('engine', CPU)
    return Tracker(model or StandInModel(), TrackerOptions(**options))


def test_exact_motion_recovery_at_unit_scale():
    # A 56 x 56 target gives a 112 template and a 224 search crop: both resize factors are 1,
    # so the stand-in measures the object exactly and the tracker must return the true box.
    background = textured_frame(HEIGHT, WIDTH)
    true_box = [60, 50, 56, 56]
    tracker = make_tracker()
    target = tracker.initialize(draw_box(background, true_box), true_box)
    for step, (dx, dy) in enumerate([(3, 1), (-2, 4), (7, -5), (0, 0), (12, 9), (-9, -11)]):
        true_box = [true_box[0] + dx, true_box[1] + dy, 56, 56]
        (result,) = tracker.track(draw_box(background, true_box))
        assert result.target_id == target and result.frame_index == step + 1
        np.testing.assert_allclose(result.box, true_box, atol=BOX_TOLERANCE)
        assert result.confidence == pytest.approx(1.0)
        assert result.state is TrackState.TRACKING


def test_reposition_moves_the_search_crop_and_keeps_the_template():
    # The stand-in finds the object wherever the crop is: re-placed far off in one frame, the
    # tracker must still return the true box only when the crop still holds the object.
    background = textured_frame(HEIGHT, WIDTH, seed=3)
    box = [60, 50, 56, 56]
    tracker = make_tracker()
    target = tracker.initialize(draw_box(background, box), box)
    tracker.reposition(target, [64, 52, 56, 56])
    (result,) = tracker.track(draw_box(background, box))
    np.testing.assert_allclose(result.box, box, atol=BOX_TOLERANCE)
    tracker.reposition(target, [250, 170, 20, 20])     # the object is outside this crop
    (result,) = tracker.track(draw_box(background, box))
    assert iou(result.box, box) < 0.5
    with pytest.raises(KeyError, match='target_9'):
        tracker.reposition('target_9', box)
    with pytest.raises(ValueError):
        tracker.reposition(target, [10, 10, 0, 5])


def test_moving_scaling_object_across_borders():
    background = textured_frame(HEIGHT, WIDTH, seed=1)
    tracker = make_tracker()
    x, y, w, h = 100, 80, 40, 30
    tracker.initialize(draw_box(background, (x, y, w, h)), (x, y, w, h))
    for frame_index in range(40):
        x, y = x + 6, y + 3
        w, h = w + 1, h + (frame_index % 2)
        frame = draw_box(background, (x, y, w, h))
        (result,) = tracker.track(frame)
        visible = (max(x, 0), max(y, 0), min(x + w, WIDTH - 1) - max(x, 0),
                   min(y + h, HEIGHT - 1) - max(y, 0))
        bx, by, bw, bh = result.box
        assert 0 <= bx and 0 <= by and bx + bw <= WIDTH and by + bh <= HEIGHT
        if visible[2] > 10 and visible[3] > 10:
            assert iou(result.box, visible) > 0.85, (frame_index, result.box, visible)


def test_batched_equals_one_at_a_time():
    background = textured_frame(HEIGHT, WIDTH, seed=2)
    boxes = [[20, 20, 30, 24], [200, 40, 40, 36], [120, 160, 26, 30]]
    frames = []
    for step in range(5):
        frame = background
        for i, box in enumerate(boxes):
            box[0] += (i + 1) * 2
            box[1] += step - i
            frame = draw_box(frame, box)
        frames.append(frame)
    model = StandInModel()
    batched = make_tracker(model)
    singles = [make_tracker() for _ in boxes]
    first = draw_box(draw_box(draw_box(background, [20, 20, 30, 24]), [200, 40, 40, 36]),
                     [120, 160, 26, 30])
    for tracker_single, box in zip(singles, ([20, 20, 30, 24], [200, 40, 40, 36],
                                             [120, 160, 26, 30])):
        batched.initialize(first, box)
        tracker_single.initialize(first, box)
    for frame in frames:
        together = batched.track(frame)
        apart = [single.track(frame)[0] for single in singles]
        assert [r.box for r in together] == [r.box for r in apart]
        assert [r.confidence for r in together] == [r.confidence for r in apart]
    assert set(model.batch_sizes) == {3}


def test_device_crop_path_matches_cpu_path():
    background = textured_frame(HEIGHT, WIDTH, seed=3)
    box = [90, 70, 33, 41]
    exact = make_tracker()
    device = make_tracker(engine=EngineOptions(device='cpu', crop_on_device=True))
    assert device.engine.crop_on_device and not exact.engine.crop_on_device
    for tracker in (exact, device):
        tracker.initialize(draw_box(background, box), box)
    for _ in range(6):
        box = [box[0] + 5, box[1] + 2, box[2], box[3]]
        frame = draw_box(background, box)
        (a,), (b,) = exact.track(frame), device.track(frame)
        assert a.box == b.box and a.confidence == b.confidence


def test_ids_reinit_remove_and_clear():
    frame = textured_frame(HEIGHT, WIDTH)
    tracker = make_tracker()
    assert tracker.initialize(frame, (10, 10, 20, 20)) == 'target_1'
    assert tracker.initialize(frame, (50, 10, 20, 20), target_id='target_2') == 'target_2'
    assert tracker.initialize(frame, (90, 10, 20, 20), '') == 'target_3'
    assert tracker.initialize(frame, (90, 60, 30, 30), 'boat') == 'boat'
    tracker.initialize(frame, (20, 60, 30, 30), 'target_1')     # replaces target_1
    assert tracker.target_ids == ('target_1', 'target_2', 'target_3', 'boat')
    results = tracker.track(frame)
    assert [r.target_id for r in results] == list(tracker.target_ids)
    assert results[0].box[2:] == (30.0, 30.0)   # the stand-in sees no red: size kept
    tracker.remove('target_2')
    with pytest.raises(KeyError, match='unknown target id'):
        tracker.remove('target_2')
    assert len(tracker.track(frame)) == 3
    tracker.clear()
    assert tracker.track(frame) == [] and tracker.target_ids == ()
    with pytest.raises(ValueError, match='target_id'):
        tracker.initialize(frame, (10, 10, 20, 20), target_id=7)


@pytest.mark.parametrize('frame, message', [
    (np.zeros((20, 20, 3), dtype=np.float32), 'uint8'),
    (np.zeros((20, 20), dtype=np.uint8), 'H x W x 3'),
    (np.zeros((20, 20, 4), dtype=np.uint8), 'H x W x 3'),
    (np.zeros((0, 0, 3), dtype=np.uint8), 'empty'),
    ([[0, 0, 0]], 'numpy array'),
])
def test_bad_frames_rejected(frame, message):
    tracker = make_tracker()
    with pytest.raises(ValueError, match=message):
        tracker.track(frame)
    with pytest.raises(ValueError, match=message):
        tracker.initialize(frame, (1, 1, 5, 5))


def test_bad_boxes_rejected():
    tracker = make_tracker()
    frame = textured_frame(HEIGHT, WIDTH)
    for box in ((0, 0, float('nan'), 5), (0, 0, 0, 5), (WIDTH + 1, 0, 5, 5)):
        with pytest.raises(ValueError):
            tracker.initialize(frame, box)
    assert tracker.target_ids == ()


def test_initial_box_partly_outside_is_used_as_given():
    """The official tracker keeps such a box: template and anno come from the raw box."""
    tracker = make_tracker()
    frame = textured_frame(HEIGHT, WIDTH)
    box = (-20.0, 30.0, 60.0, 40.0)
    target_id = tracker.initialize(frame, box)
    assert tracker._targets[target_id].box == box


def test_nan_output_keeps_box_and_loses_target():
    model = StandInModel()
    tracker = make_tracker(model, thresholds=StateThresholds(lost_after_frames=2))
    box = [60, 50, 30, 30]
    frame = draw_box(textured_frame(HEIGHT, WIDTH), box)
    tracker.initialize(frame, box)
    (before,) = tracker.track(frame)
    model.fail = True
    states = []
    for _ in range(3):
        (result,) = tracker.track(frame)
        assert result.box == before.box and result.confidence == 0.0
        states.append(result.state)
    assert states == [TrackState.UNCERTAIN, TrackState.LOST, TrackState.LOST]
    model.fail = False
    (result,) = tracker.track(frame)
    assert result.state is TrackState.TRACKING and result.confidence > 0.9


def test_frame_size_change_and_boxes_leaving_the_image():
    tracker = make_tracker()
    big = textured_frame(HEIGHT, WIDTH)
    tracker.initialize(big, (WIDTH - 40, HEIGHT - 40, 80, 80))      # reaches outside
    tracker.initialize(big, (0, 0, 1, 1))                           # tiny
    tracker.initialize(big, (-10, -10, WIDTH, HEIGHT))                # as large as the image
    with pytest.raises(ValueError, match='larger than the'):
        tracker.initialize(big, (-WIDTH, -HEIGHT, 3 * WIDTH, 3 * HEIGHT))  # no target is
    with pytest.raises(ValueError, match='larger than the'):
        tracker.initialize(big, (0, 0, 30000, 30000), target_id='typo')
    assert 'typo' not in tracker.target_ids
    small = textured_frame(60, 90, seed=4)
    for frame in (big, small, small, big):
        frame_height, frame_width = frame.shape[:2]
        for result in tracker.track(frame):
            x, y, w, h = result.box
            assert 0 <= x and 0 <= y and x + w <= frame_width and y + h <= frame_height


def test_results_carry_classes_and_timings():
    frame = textured_frame(HEIGHT, WIDTH)
    untrained = make_tracker(StandInModel())
    untrained.initialize(frame, (10, 10, 30, 30))
    (result,) = untrained.track(frame)
    assert isinstance(result, TargetResult) and result.probabilities is None
    assert result.class_names == StandInModel().class_names
    assert set(result.timings) == set(TIMING_KEYS)
    assert all(value >= 0 for value in result.timings.values())
    for multi_label in (False, True):
        tracker = make_tracker(StandInModel(multi_label=multi_label, cls_trained=True))
        tracker.initialize(frame, (10, 10, 30, 30))
        (result,) = tracker.track(frame)
        probs = result.probabilities
        assert probs.dtype == np.float32 and probs.shape == (len(result.class_names),)
        assert result.multi_label is multi_label
        if multi_label:
            assert probs.sum() > 1.0 and ((probs > 0) & (probs < 1)).all()
        else:
            assert probs.sum() == pytest.approx(1.0)


def test_tiny_model_batched_close_to_single_and_untrained_head():
    torch.manual_seed(0)
    model = build_model('tiny')
    frame = textured_frame(HEIGHT, WIDTH, seed=5)
    boxes = [(30, 40, 50, 40), (180, 100, 60, 70)]
    batched = make_tracker(model)
    for box in boxes:
        batched.initialize(frame, box)
    results = batched.track(frame)
    for box, together in zip(boxes, results):
        single = make_tracker(model)
        single.initialize(frame, box)
        (alone,) = single.track(frame)
        np.testing.assert_allclose(together.box, alone.box, atol=1e-3)
        assert together.confidence == pytest.approx(alone.confidence, abs=1e-4)
        assert together.probabilities is None and 0.0 <= together.confidence <= 1.0
    model.trained_heads.add('cls')
    assert batched.track(frame)[0].probabilities is not None
    bf16 = make_tracker(model, engine=EngineOptions(device='cpu', precision='bf16'))
    bf16.initialize(frame, boxes[0])
    assert np.isfinite(bf16.track(frame)[0].box).all()


@pytest.mark.skipif(not torch.cuda.is_available(), reason='needs a CUDA device')
def test_cuda_tracker_matches_cpu_tracker():
    box = [60, 50, 56, 56]
    background = textured_frame(HEIGHT, WIDTH)
    cpu = make_tracker()
    # The stand-in syncs (nonzero, item), so it cannot be graph-captured: eager CUDA here,
    # graphs are checked with the tiny model in test_tracking_engine.
    cuda = make_tracker(engine=EngineOptions(device='cuda'))
    assert cuda.engine.crop_on_device
    for tracker in (cpu, cuda):
        tracker.initialize(draw_box(background, box), box)
    for _ in range(3):
        box = [box[0] + 4, box[1] + 3, 56, 56]
        frame = draw_box(background, box)
        (a,), (b,) = cpu.track(frame), cuda.track(frame)
        np.testing.assert_allclose(a.box, b.box, atol=BOX_TOLERANCE)


@pytest.mark.skipif(not torch.cuda.is_available(), reason='needs a CUDA device')
def test_cuda_graph_tracker_matches_eager_with_tiny_model():
    torch.manual_seed(0)
    model = build_model('tiny')
    frame = textured_frame(HEIGHT, WIDTH, seed=6)
    boxes = [(30, 40, 50, 40), (180, 100, 60, 70)]
    trackers = [make_tracker(model, engine=EngineOptions(device='cuda', cuda_graphs=graphs))
                for graphs in (False, True)]
    for tracker in trackers:
        for box in boxes:
            tracker.initialize(frame, box)
    for _ in range(3):
        eager, graphed = (tracker.track(frame) for tracker in trackers)
        for a, b in zip(eager, graphed):
            np.testing.assert_allclose(a.box, b.box, atol=1e-2)


def test_frames_tracked_per_target_and_reset_by_reinit():
    frame = textured_frame(HEIGHT, WIDTH)
    tracker = make_tracker()
    tracker.initialize(frame, (10, 10, 20, 20), 'a')
    tracker.track(frame)
    tracker.initialize(frame, (50, 10, 20, 20), 'b')
    for _ in range(2):
        results = tracker.track(frame)
    assert {r.target_id: r.frames_tracked for r in results} == {'a': 3, 'b': 2}
    tracker.initialize(frame, (10, 10, 20, 20), 'a')            # re-initialised: from zero
    assert {r.target_id: r.frames_tracked for r in tracker.track(frame)} == {'a': 1, 'b': 3}
    with pytest.raises(ValueError, match='max_targets=2'):
        tracker.initialize(frame, (90, 10, 20, 20), 'c', max_targets=2)
    assert tracker.initialize(frame, (90, 10, 20, 20), 'b', max_targets=2) == 'b'
    assert tracker.clear() == ('a', 'b')


def test_targets_set_from_another_thread_while_tracking():
    """The tracker's own lock keeps a service thread and the inference thread consistent."""
    frame = textured_frame(HEIGHT, WIDTH)
    tracker = make_tracker(build_model('tiny'))
    errors, stop = [], threading.Event()

    def track() -> None:
        while not stop.is_set():
            try:
                for result in tracker.track(frame):
                    assert result.target_id in ('a', 'b', 'c')
            except Exception as exc:  # noqa: B902 - collected and asserted below
                errors.append(exc)
    worker = threading.Thread(target=track)
    worker.start()
    try:
        for index in range(30):
            target = 'abc'[index % 3]
            tracker.initialize(frame, (10 + index, 10, 20, 20), target)
            if index % 4 == 3:
                tracker.remove(target)
    finally:
        stop.set()
        worker.join(30)
    assert not errors, errors
    assert set(tracker.target_ids) <= {'a', 'b', 'c'}


def test_crop_factors_are_tracker_settings():
    tracker = make_tracker(build_model('tiny'), search_factor=5.0)
    assert (tracker.template_factor, tracker.search_factor) == (2.0, 5.0)
    # Checkpoints of earlier versions stored the factors in the model config: still readable.
    legacy = dict(get_config('tiny').to_dict(), template_factor=2.0, search_factor=4.0)
    assert SimTrackConfig.from_dict(legacy) == get_config('tiny')
    with pytest.raises(ValueError, match='unknown model config keys'):
        SimTrackConfig.from_dict(dict(legacy, colour='red'))
    with pytest.raises(ValueError, match='search_factor'):
        TrackerOptions(search_factor=None)
