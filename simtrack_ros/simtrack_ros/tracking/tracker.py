"""Multi-target SimTrack tracker: the official test-time procedure, batched over targets.

Per target, :meth:`Tracker.initialize` cuts the template once (factor 2 of the target scale),
computes ``template_anno`` and caches the template tokens (``model.encode_template``). Every
:meth:`Tracker.track` call crops each target's search region around its previous box
(factor 4), runs ONE batched ``forward_search`` for all targets, maps each predicted box back
to the image and clips it with the official margin, as in ``lib/test/tracker/simtrack.py``.

Departures from the official tracker, all for robustness: an initial box entirely outside
the image is rejected (one partly outside is used as given, as the official code does);
after a frame-size change the previous boxes are clipped to the new frame; a non-finite model
output keeps the previous box and counts as confidence 0 (the target turns ``uncertain``,
then ``lost``).

Challenge probabilities: the head's own, or, when the model carries a fitted
:class:`~simtrack_ros.model.challenge_calibration.ChallengeCalibration`, the calibration's
output from the head's logits and the cues the tracker measures on the frame
(:mod:`.challenge_cues`). ``TrackerOptions.measure_cues`` measures the cues without a calibration
(to fit one: ``simtrack-calibrate``).

Two crop paths (``EngineOptions.crop_on_device``) that give the same model input bit for bit:
OpenCV on the CPU (the official procedure step by step) and the device path
(:func:`~.preprocess.crop_on_device`: one frame upload and one batched integer gather that
reproduces ``cv2.resize`` INTER_LINEAR).
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
import math
from pathlib import Path
import threading
import time
from typing import Dict, List, Optional, Sequence, Tuple, TYPE_CHECKING, Union
import warnings

import numpy as np
import torch
from torch import nn

from simtrack_ros.model.challenge_calibration import ChallengeCalibration
from simtrack_ros.model.challenge_head import class_probabilities
from simtrack_ros.tracking.challenge_cues import (
    CUE_NAMES, CueReference, measure_cues, reference_of)
from simtrack_ros.tracking.confidence import (
    corner_confidence, StateThresholds, TargetStateMachine, TrackState, WINDOW_RADIUS)
from simtrack_ros.tracking.crop import (
    Box, clip_box, CLIP_MARGIN, crop_and_resize, crop_window, map_box_back,
    template_anno, validate_box, Window)
from simtrack_ros.tracking.engine import EngineOptions
from simtrack_ros.tracking.engine_factory import build_engine
from simtrack_ros.tracking.preprocess import crop_on_device, normalize, stack_crops

if TYPE_CHECKING:
    from simtrack_ros.export.onnx_export import ExportedModel

#: Keys of :attr:`TargetResult.timings` (milliseconds).
TIMING_KEYS = ('crop', 'upload', 'forward', 'post', 'total')
_MS = 1e3
_ID_PREFIX = 'target_'


@dataclass(frozen=True)
class TrackerOptions:
    """Tracker settings.

    Attributes:
        template_factor: template crop side / target scale (official test setting: 2.0).
        search_factor: search crop side / target scale (official test setting: 4.0).
        thresholds: state-machine thresholds.
        engine: runtime, device, precision, CUDA Graphs and crop path.
        confidence_window: half-size (cells) of the confidence window around the peak.
        clip_margin: pixels of every box kept inside the image (official: 10).
        measure_cues: measure the challenge cues every frame even without a calibration
            (:attr:`TargetResult.cues`; with a calibration they are always measured).
    """

    template_factor: float = 2.0
    search_factor: float = 4.0
    thresholds: StateThresholds = field(default_factory=StateThresholds)
    engine: EngineOptions = field(default_factory=EngineOptions)
    confidence_window: int = WINDOW_RADIUS
    clip_margin: int = CLIP_MARGIN
    measure_cues: bool = False

    def __post_init__(self) -> None:
        for name in ('template_factor', 'search_factor'):
            value = getattr(self, name)
            if isinstance(value, bool) or not (isinstance(value, (int, float))
                                               and math.isfinite(value) and value > 0):
                raise ValueError(f'{name} must be a positive number, got {value!r}')
        for name in ('confidence_window', 'clip_margin'):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f'{name} must be an int >= 0, got {value!r}')
        if not isinstance(self.thresholds, StateThresholds):
            raise ValueError('thresholds must be a StateThresholds')
        if not isinstance(self.engine, EngineOptions):
            raise ValueError('engine must be an EngineOptions')


@dataclass(frozen=True)
class TargetResult:
    """One target's result for one frame.

    Attributes:
        target_id: the id given or assigned at initialisation.
        box: (x, y, w, h) in pixels of the frame, top-left corner first.
        confidence: tracking confidence in [0, 1] (see :mod:`.confidence`).
        state: tracking, uncertain or lost.
        class_names: challenge class names, in the order of ``probabilities``.
        probabilities: float32 per-class probabilities (calibrated when the model has a
            challenge calibration), or None when the classification head is untrained (or its
            output was not finite).
        multi_label: True: independent per-class probabilities; False: they sum to 1.
        frame_index: number of :meth:`Tracker.track` calls so far (1 for the first frame).
        frames_tracked: frames this target has been tracked in since it was (re)initialised.
        timings: per-frame stage times in ms (:data:`TIMING_KEYS`), shared by all targets of
            the frame since they run batched.
        logits: the head's float32 logits (None as for ``probabilities``).
        cues: the measured challenge cues (:data:`~.challenge_cues.CUE_NAMES`), or None when
            none are measured.
    """

    target_id: str
    box: Box
    confidence: float
    state: TrackState
    class_names: Tuple[str, ...]
    probabilities: Optional[np.ndarray]
    multi_label: bool
    frame_index: int
    frames_tracked: int
    timings: Dict[str, float]
    logits: Optional[np.ndarray] = None
    cues: Optional[np.ndarray] = None


@dataclass
class _Target:
    box: Box
    tokens: torch.Tensor
    machine: TargetStateMachine
    frame_shape: Tuple[int, int]
    cue_reference: Optional[CueReference] = None
    frames_tracked: int = 0


def validate_frame(frame: np.ndarray, min_size: int = 1) -> Tuple[int, int]:
    """Check an ``H x W x 3`` uint8 RGB frame; return ``(H, W)`` or raise ValueError."""
    if not isinstance(frame, np.ndarray):
        raise ValueError(f'frame must be a numpy array, got {type(frame).__name__}')
    if frame.dtype != np.uint8:
        raise ValueError(f'frame must be uint8, got {frame.dtype}')
    if frame.ndim != 3 or frame.shape[2] != 3:
        raise ValueError(f'frame must be H x W x 3 (RGB), got shape {frame.shape}')
    height, width = frame.shape[:2]
    if min(height, width) < max(min_size, 1):
        raise ValueError(f'frame {width}x{height} is empty or smaller than '
                         f'{max(min_size, 1)} pixels')
    return height, width


class Tracker:
    """Tracks any number of targets in a stream of RGB frames (see the module docstring).

    ``model`` is a SimTrack-like module or an exported model
    (:class:`~simtrack_ros.export.onnx_export.ExportedModel`); the engine that runs it comes
    from :func:`~.engine_factory.build_engine` (``checkpoint``: the file a module was loaded
    from, the key of the export cache when an exported runtime is chosen).

    Thread-safe: one lock serialises every method that reads or changes the targets or runs
    the model, so a service thread can set targets while another thread tracks (and CUDA
    Graph replays, which share one memory pool, never overlap).
    """

    def __init__(self, model: Union[nn.Module, 'ExportedModel'],
                 options: Optional[TrackerOptions] = None,
                 checkpoint: Optional[Path] = None) -> None:
        self.options = options or TrackerOptions()
        self.engine = build_engine(model, self.options.engine, checkpoint)
        self.model = self.engine.model
        config = self.model.config
        self.template_size: int = config.template_size
        self.search_size: int = config.search_size
        self.frame_index = 0
        self._lock = threading.RLock()
        self._targets: Dict[str, _Target] = {}
        self._token_batch: Optional[Tuple[Tuple[str, ...], torch.Tensor]] = None
        self._id_counter = 0
        self.calibration = self._usable_calibration()

    def _usable_calibration(self) -> Optional[ChallengeCalibration]:
        """Return the model's challenge calibration if it fits this tracker's cues.

        None otherwise (with a warning when the model has one that does not fit).
        """
        calibration = getattr(self.model, 'challenge_calibration', None)
        if calibration is None or not self.has_probabilities:
            return None
        try:
            calibration.check_matches(self.class_names, CUE_NAMES)
        except ValueError as exc:
            warnings.warn(f"{exc}; the head's own probabilities are published instead",
                          RuntimeWarning, stacklevel=3)
            return None
        return calibration

    @property
    def measures_cues(self) -> bool:
        """Whether the challenge cues are measured every frame."""
        return self.calibration is not None or self.options.measure_cues

    @property
    def template_factor(self) -> float:
        """Template crop side / target scale."""
        return self.options.template_factor

    @property
    def search_factor(self) -> float:
        """Search crop side / target scale."""
        return self.options.search_factor

    def update_options(self, search_factor: float, template_factor: float,
                       thresholds: StateThresholds) -> None:
        """Change crop factors and state thresholds while tracking.

        The search factor applies from the next frame, the template factor to targets set
        afterwards (a template is cut once), the thresholds to every target at once.
        """
        with self._lock:
            self.options = replace(self.options, search_factor=search_factor,
                                   template_factor=template_factor, thresholds=thresholds)
            for target in self._targets.values():
                target.machine.thresholds = thresholds

    @property
    def target_ids(self) -> Tuple[str, ...]:
        """Ids of the current targets, in initialisation order."""
        with self._lock:
            return tuple(self._targets)

    @property
    def class_names(self) -> Tuple[str, ...]:
        """Challenge class names of the model."""
        return tuple(self.model.class_names)

    @property
    def has_probabilities(self) -> bool:
        """Whether results carry class probabilities (the class head is trained)."""
        return bool(self.model.cls_head_trained)

    def _new_id(self) -> str:
        while True:
            self._id_counter += 1
            target_id = f'{_ID_PREFIX}{self._id_counter}'
            if target_id not in self._targets:
                return target_id

    def _inputs(self, frame: np.ndarray, windows: Sequence[Window], output_size: int
                ) -> Tuple[torch.Tensor, Dict[str, float]]:
        """Normalised crops on the engine's device, with crop and upload times (ms)."""
        engine = self.engine
        start = time.perf_counter()
        if engine.crop_on_device:
            pixels = engine.upload(torch.from_numpy(np.ascontiguousarray(frame)))
            engine.synchronize()
            uploaded = time.perf_counter()
            batch = crop_on_device(pixels, windows, output_size)
            engine.synchronize()
            done = time.perf_counter()
            return batch, {'crop': (done - uploaded) * _MS, 'upload': (uploaded - start) * _MS}
        crops = stack_crops([crop_and_resize(frame, window, output_size) for window in windows])
        cropped = time.perf_counter()
        pixels = engine.upload(crops)
        engine.synchronize()
        uploaded = time.perf_counter()
        batch = normalize(pixels)
        engine.synchronize()
        done = time.perf_counter()
        crop_ms = (cropped - start + done - uploaded) * _MS
        return batch, {'crop': crop_ms, 'upload': (uploaded - cropped) * _MS}

    def initialize(self, frame: np.ndarray, box_xywh: Sequence[float],
                   target_id: Optional[str] = None, max_targets: Optional[int] = None) -> str:
        """Start tracking the target in ``box_xywh`` (pixels) of ``frame``; return its id.

        ``target_id`` None or '' assigns a new id (``target_1``, ``target_2``, ...); an
        existing id is re-initialised (its template and state are replaced). Raises
        ValueError for a bad frame or a box that cannot be tracked, and when a new target
        would exceed ``max_targets`` (None: no limit).
        """
        if target_id is not None and not isinstance(target_id, str):
            raise ValueError(f'target_id must be a string or None, got {target_id!r}')
        height, width = validate_frame(frame, self.options.clip_margin)
        box = validate_box(box_xywh, height, width)
        with self._lock:
            if (max_targets is not None and target_id not in self._targets
                    and len(self._targets) >= max_targets):
                raise ValueError(f'already tracking max_targets={max_targets} targets '
                                 f'({", ".join(self._targets)}); stop one first')
            window = crop_window(box, self.options.template_factor)
            template, _ = self._inputs(frame, [window], self.template_size)
            anno = template_anno(box, self.template_size / window[2], self.template_size)
            tokens = self.engine.encode_template(template, torch.from_numpy(anno)[None])
            target_id = target_id or self._new_id()
            reference = reference_of(frame, box) if self.measures_cues else None
            self._targets[target_id] = _Target(
                box, tokens, TargetStateMachine(self.options.thresholds), (height, width),
                reference)
            self._token_batch = None
        return target_id

    def reposition(self, target_id: str, box_xywh: Sequence[float]) -> None:
        """Move a target's last box (the next search crop centres on it); the template stays.

        KeyError for an unknown id; ValueError for a box that cannot be tracked in the
        target's last frame size.
        """
        with self._lock:
            if target_id not in self._targets:
                raise KeyError(f'unknown target {target_id!r}')
            target = self._targets[target_id]
            target.box = validate_box(box_xywh, *target.frame_shape)

    def remove(self, target_id: str) -> None:
        """Stop tracking one target; KeyError if the id is unknown."""
        with self._lock:
            if target_id not in self._targets:
                known = ', '.join(self._targets) or 'none'
                raise KeyError(f'unknown target id {target_id!r} (current targets: {known})')
            del self._targets[target_id]
            self._token_batch = None

    def clear(self) -> Tuple[str, ...]:
        """Stop tracking all targets; return the ids that were tracked."""
        with self._lock:
            ids = tuple(self._targets)
            self._targets.clear()
            self._token_batch = None
            return ids

    def suspend(self) -> Tuple[str, ...]:
        """Stop tracking every target and free the device (:meth:`resume` to go on).

        Returns the ids that were tracked.
        """
        with self._lock:
            ids = self.clear()
            self.engine.offload()
            return ids

    def resume(self) -> None:
        """Bring the model back to its device after :meth:`suspend`."""
        with self._lock:
            self.engine.reload()

    def close(self) -> None:
        """Stop tracking and free the device for good (the tracker is not used afterwards)."""
        self.suspend()

    def _batched_tokens(self, ids: Tuple[str, ...]) -> torch.Tensor:
        if self._token_batch is None or self._token_batch[0] != ids:
            tokens = self.engine.batch_tokens([self._targets[i].tokens for i in ids])
            self._token_batch = (ids, tokens)
        return self._token_batch[1]

    def track(self, frame: np.ndarray) -> List[TargetResult]:
        """Track every target in ``frame`` (H x W x 3 uint8 RGB) with one batched forward."""
        height, width = validate_frame(frame, self.options.clip_margin)
        with self._lock:
            self.frame_index += 1
            if not self._targets:
                return []
            return self._track(frame, height, width)

    def _track(self, frame: np.ndarray, height: int, width: int) -> List[TargetResult]:
        start = time.perf_counter()
        margin = self.options.clip_margin
        ids = tuple(self._targets)
        targets = [self._targets[i] for i in ids]
        for target in targets:
            if target.frame_shape != (height, width):
                target.box = clip_box(target.box, height, width, margin)
                target.frame_shape = (height, width)
        windows = [crop_window(target.box, self.options.search_factor) for target in targets]
        search, timings = self._inputs(frame, windows, self.search_size)
        tokens = self._batched_tokens(ids)
        forward_start = time.perf_counter()
        out = self.engine.run(tokens, search, run_cls_head=self.has_probabilities)
        post_start = time.perf_counter()

        confidences = corner_confidence(out['score_map_tl'], out['score_map_br'],
                                        self.options.confidence_window)
        logits = self._logits(out)
        boxes = out['pred_boxes'].reshape(len(ids), -1, 4).mean(dim=1)
        states, cues = [], []
        for index, (target, window) in enumerate(zip(targets, windows)):
            box = map_box_back(boxes[index].tolist(), target.box,
                               self.search_size / window[2], self.search_size)
            previous = target.box
            if all(math.isfinite(v) for v in box):
                target.box = clip_box(box, height, width, margin)
            else:
                confidences[index] = 0.0
            target.frames_tracked += 1
            states.append(target.machine.update(float(confidences[index])))
            cues.append(self._cues(frame, target, previous, float(confidences[index])))
        probabilities = self._probabilities(logits, cues)
        done = time.perf_counter()
        timings.update(forward=(post_start - forward_start) * _MS,
                       post=(done - post_start) * _MS, total=(done - start) * _MS)
        multi_label = bool(self.model.config.multi_label)
        return [TargetResult(
            target_id=target_id, box=target.box, confidence=float(confidences[index]),
            state=states[index], class_names=self.class_names,
            probabilities=probabilities[index], multi_label=multi_label,
            frame_index=self.frame_index, frames_tracked=target.frames_tracked,
            timings=dict(timings), logits=logits[index], cues=cues[index])
            for index, (target_id, target) in enumerate(zip(ids, targets))]

    def _logits(self, out: Dict[str, torch.Tensor]) -> List[Optional[np.ndarray]]:
        """Per-target head logits (float32); None where untrained, absent or not finite."""
        batch = out['pred_boxes'].shape[0]
        if not self.has_probabilities or 'cls_logits' not in out:
            return [None] * batch
        rows = out['cls_logits'].float().cpu().numpy()
        return [row.copy() if np.isfinite(row).all() else None for row in rows]

    def _cues(self, frame: np.ndarray, target: _Target, previous: Box, confidence: float
              ) -> Optional[np.ndarray]:
        if target.cue_reference is None:
            return None
        return measure_cues(frame, target.box, previous, target.cue_reference, confidence)

    def _probabilities(self, logits: List[Optional[np.ndarray]],
                       cues: List[Optional[np.ndarray]]) -> List[Optional[np.ndarray]]:
        """Per-target class probabilities: calibrated when the model has a calibration."""
        multi_label = self.model.config.multi_label
        probabilities: List[Optional[np.ndarray]] = []
        for row, measured in zip(logits, cues):
            if row is None:
                probabilities.append(None)
            elif self.calibration is not None and measured is not None:
                probabilities.append(self.calibration.probabilities(row[None], measured[None])[0])
            else:
                probabilities.append(
                    class_probabilities(torch.from_numpy(row)[None], multi_label)[0].numpy())
        return probabilities
