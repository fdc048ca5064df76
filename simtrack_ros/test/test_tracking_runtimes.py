"""The tracker through ONNX Runtime and OpenVINO: PyTorch's boxes, the export cache, int8, bf16.

One module-wide copy of the package's demo weights (the trained 'small' model) is exported
twice: through the cache beside the checkpoint (OpenVINO) and into an engine's own temporary
folder (ONNX Runtime, no checkpoint given).
"""
from __future__ import annotations

from pathlib import Path
import shutil
from typing import List, Tuple

import cv2
import numpy as np
import onnxruntime
import pytest

from simtrack_ros.data.synthetic_sea import render_sea_frame
from simtrack_ros.export.onnx_export import load_exported
from simtrack_ros.model import load_checkpoint
from simtrack_ros.tracking import EngineOptions, precision_policy, Tracker, TrackerOptions
from simtrack_ros.tracking.cpu_features import native_bf16
from simtrack_ros.tracking.onnxruntime_engine import GPU_PROVIDERS

DEMO_WEIGHTS = Path(__file__).resolve().parents[1] / 'weights' / 'demo_small.pth'
#: fp32 boxes of an exported runtime must equal PyTorch's within this (pixels).
FP32_BOX_TOLERANCE_PX = 1e-3
FRAMES = 16
#: The boat of the generated scene, and a patch of sea as a second target.
SEA_PATCH = (40.0, 150.0, 40.0, 30.0)


@pytest.fixture(scope='module')
def demo(tmp_path_factory) -> Tuple[Path, object]:
    """Copy the demo checkpoint (its cache goes beside it); return it and its model."""
    checkpoint = Path(shutil.copy(DEMO_WEIGHTS, tmp_path_factory.mktemp('runtimes') / 'demo.pth'))
    model, _ = load_checkpoint(checkpoint)
    return checkpoint, model


@pytest.fixture(scope='module')
def sequence() -> List[Tuple[np.ndarray, Tuple[float, ...]]]:
    """Render frames (RGB) of the synthetic sea scene with the boat's box."""
    frames = []
    for index in range(FRAMES):
        bgr, box = render_sea_frame(index / 10, 320, 240, seed=3)
        frames.append((cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), box))
    return frames


def make(model, checkpoint=None, **engine) -> Tracker:
    """Make a tracker on the CPU with the given engine options."""
    return Tracker(model, TrackerOptions(engine=EngineOptions(device='cpu', **engine)),
                   checkpoint=checkpoint)


def track(tracker: Tracker, sequence) -> Tuple[np.ndarray, np.ndarray, list]:
    """Track two targets; return boxes [frames, 2, 4], confidences and probabilities."""
    first, box = sequence[0]
    tracker.clear()
    tracker.initialize(first, box)
    tracker.initialize(first, SEA_PATCH)
    results = [tracker.track(frame) for frame, _ in sequence[1:]]
    boxes = np.array([[r.box for r in frame] for frame in results])
    confidences = np.array([[r.confidence for r in frame] for frame in results])
    return boxes, confidences, [r.probabilities for frame in results for r in frame]


@pytest.fixture(scope='module')
def reference(demo, sequence):
    """Track with PyTorch in fp32."""
    tracker = make(demo[1])
    assert (tracker.engine.runtime, tracker.engine.precision) == ('torch', 'fp32')
    return track(tracker, sequence)


@pytest.fixture(scope='module')
def openvino_tracker(demo) -> Tracker:
    """Make an OpenVINO tracker through the export cache beside the checkpoint."""
    checkpoint, model = demo
    return make(model, checkpoint, runtime='openvino')


def assert_same_tracks(got, expected) -> None:
    boxes, confidences, probabilities = got
    assert np.isfinite(boxes).all()
    assert np.abs(boxes - expected[0]).max() < FP32_BOX_TOLERANCE_PX
    np.testing.assert_allclose(confidences, expected[1], atol=1e-4)
    for ours, theirs in zip(probabilities, expected[2]):
        np.testing.assert_allclose(ours, theirs, atol=1e-4)


def test_openvino_tracks_like_pytorch_in_fp32(openvino_tracker, demo, sequence, reference):
    engine = openvino_tracker.engine
    assert (engine.runtime, engine.precision) == ('openvino', 'fp32')
    assert engine.choice.reason.startswith('auto: fp32')       # small: 192 wide
    assert 'INFERENCE_PRECISION_HINT f32' in engine.describe()
    assert engine.model.search.parent.parent == demo[0].with_suffix('.export')
    assert openvino_tracker.has_probabilities and reference[2][0] is not None
    assert_same_tracks(track(openvino_tracker, sequence), reference)


def test_onnxruntime_tracks_like_pytorch_in_fp32(demo, sequence, reference):
    tracker = make(demo[1], runtime='onnxruntime')         # no checkpoint: its own export
    engine = tracker.engine
    assert (engine.runtime, engine.precision) == ('onnxruntime', 'fp32')
    assert engine.scratch is not None
    assert Path(engine.scratch.name) in engine.model.search.parents
    assert 'CPUExecutionProvider' in engine.describe()
    assert_same_tracks(track(tracker, sequence), reference)
    tracker.suspend()                                       # the node's deactivate/activate
    tracker.resume()
    assert_same_tracks(track(tracker, sequence), reference)


def test_a_restart_reuses_the_cached_export(openvino_tracker, demo):
    search = openvino_tracker.engine.model.search
    stamp = search.stat().st_mtime_ns
    again = make(demo[1], demo[0], runtime='openvino')
    assert again.engine.model.search == search and search.stat().st_mtime_ns == stamp


def test_an_exported_file_runs_with_runtime_auto(openvino_tracker, sequence, reference):
    exported = load_exported(openvino_tracker.engine.model.search)
    tracker = make(exported)
    assert tracker.engine.runtime == 'openvino'            # installed, so auto picks it
    assert tracker.model is exported and tracker.search_size == exported.config.search_size
    assert_same_tracks(track(tracker, sequence), reference)
    with pytest.raises(ValueError, match="runtime 'torch' needs the PyTorch checkpoint"):
        make(exported, runtime='torch')


def test_int8_runs_the_dynamic_file_on_onnxruntime(demo, openvino_tracker, sequence):
    checkpoint, model = demo
    tracker = make(model, checkpoint, runtime='onnxruntime', precision='int8')
    exported = tracker.engine.model
    assert exported.precision == 'int8-dynamic' and tracker.engine.precision == 'int8'
    assert exported.search.parent == openvino_tracker.engine.model.search.parent
    boxes, confidences, _ = track(tracker, sequence)
    assert np.isfinite(boxes).all() and ((confidences >= 0) & (confidences <= 1)).all()
    # The file decides: auto runs an int8 file as int8; other precisions are refused.
    by_file = make(exported, runtime='onnxruntime')
    assert by_file.engine.precision == 'int8' and 'int8-dynamic' in by_file.engine.choice.reason
    with pytest.raises(ValueError, match='holds int8-dynamic weights'):
        make(exported, runtime='onnxruntime', precision='fp32')
    with pytest.raises(ValueError, match='holds fp32 weights'):
        make(openvino_tracker.engine.model, precision='int8')


def test_bf16_is_refused_on_an_exported_runtime_without_native_bf16(openvino_tracker,
                                                                    monkeypatch):
    monkeypatch.setattr(precision_policy, 'cpu_flags', lambda: frozenset({'avx512_vnni'}))
    exported = openvino_tracker.engine.model
    with pytest.raises(ValueError, match='about 3x slower'):
        make(exported, runtime='openvino', precision='bf16')
    with pytest.raises(ValueError, match='no bf16 mode'):
        make(exported, runtime='onnxruntime', precision='bf16')


@pytest.mark.skipif(not native_bf16(), reason='needs a CPU with native bf16 (AVX512-BF16/AMX)')
def test_openvino_bf16_where_native(openvino_tracker, sequence):
    tracker = make(openvino_tracker.engine.model, runtime='openvino', precision='bf16')
    assert 'INFERENCE_PRECISION_HINT bf16' in tracker.engine.describe()
    boxes, _, _ = track(tracker, sequence)
    assert np.isfinite(boxes).all()


@pytest.mark.skipif(any(p in onnxruntime.get_available_providers() for p in GPU_PROVIDERS),
                    reason='checks an ONNX Runtime without GPU providers')
def test_onnxruntime_on_cuda_without_a_gpu_provider(openvino_tracker):
    with pytest.raises(ValueError, match='no CUDA or TensorRT provider'):
        Tracker(openvino_tracker.engine.model, TrackerOptions(engine=EngineOptions(
            device='cuda', runtime='onnxruntime')))
