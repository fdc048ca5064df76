"""Calibration inputs for static int8: search-graph inputs cut the way the tracker cuts them.

Per sequence (GOT-10k layout, :mod:`simtrack_ros.data.sequences`) the template is cut from the
first frame with a visible target (window of ``TrackerOptions.template_factor`` times the
target scale, ``template_anno`` as the tracker computes it) and encoded once: by
``encode_template`` for a torch model, by the template graph (ONNX Runtime) for an
:class:`~.onnx_export.ExportedModel`. Search crops (``search_factor``) are cut around the
ground-truth boxes of later frames, shifted and scaled by a small seeded jitter, as a tracker's
previous box is never exactly on the target. Without real data,
:func:`synthetic_calibration_sequences` renders sequences with the project's synthetic
maritime generator.
"""
from __future__ import annotations

import math
import os
from pathlib import Path
import shutil
from typing import Callable, Dict, List, Sequence, Tuple, Union

import numpy as np
import torch

from simtrack_ros.data.sequences import (
    LIST_FILE, list_sequences, read_sequence, Sequence as TrackSequence)
from simtrack_ros.data.synthetic_dataset import generate_dataset, SynthOptions
from simtrack_ros.export.metadata import PathLike, temporary_sibling
from simtrack_ros.export.onnx_export import (
    ExportedModel, onnxruntime_session, SEARCH_INPUTS, TEMPLATE_INPUTS)
from simtrack_ros.model.simtrack import SimTrack
from simtrack_ros.tracking.crop import Box, crop_and_resize, crop_window, template_anno
from simtrack_ros.tracking.preprocess import normalize, stack_crops
from simtrack_ros.tracking.tracker import TrackerOptions

#: Standard deviation of the search-box centre shift, as a fraction of the target scale.
CENTRE_JITTER = 0.1
#: Standard deviation of the search-box log scale change.
SCALE_JITTER = 0.05
Encoder = Callable[[np.ndarray, np.ndarray], np.ndarray]


def _encoder(model: Union[SimTrack, ExportedModel]) -> Encoder:
    """Template crop [1, 3, T, T] and anno [1, 4] (float32) -> template tokens (float32)."""
    if isinstance(model, ExportedModel):
        session = onnxruntime_session(model.template)

        def encode_onnx(template: np.ndarray, anno: np.ndarray) -> np.ndarray:
            return session.run(None, dict(zip(TEMPLATE_INPUTS, (template, anno))))[0]
        return encode_onnx
    device = next(model.parameters()).device

    def encode_torch(template: np.ndarray, anno: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            tokens = model.encode_template(torch.from_numpy(template).to(device),
                                           torch.from_numpy(anno).to(device))
        return tokens.float().cpu().numpy()
    return encode_torch


def _crop(frame: np.ndarray, box: Box, factor: float, size: int
          ) -> Tuple[np.ndarray, Tuple[int, int, int]]:
    """Normalised float32 crop [1, 3, size, size] of the tracker's window around ``box``."""
    window = crop_window(box, factor)
    pixels = stack_crops([crop_and_resize(frame, window, size)])
    return normalize(pixels).numpy(), window


def _visible_frames(sequence: TrackSequence) -> List[int]:
    """Frames whose box is finite with positive size and not marked absent."""
    boxes = sequence.boxes
    ok = np.isfinite(boxes).all(axis=1) & (boxes[:, 2] > 0) & (boxes[:, 3] > 0)
    if sequence.absent is not None:
        ok &= sequence.absent == 0
    return [int(i) for i in np.flatnonzero(ok)]


def _jittered(box: Sequence[float], rng: np.random.Generator) -> Box:
    x, y, w, h = (float(v) for v in box)
    scale = math.sqrt(w * h)
    cx = x + w / 2 + rng.normal(0.0, CENTRE_JITTER) * scale
    cy = y + h / 2 + rng.normal(0.0, CENTRE_JITTER) * scale
    factor = math.exp(rng.normal(0.0, SCALE_JITTER))
    w, h = w * factor, h * factor
    return (cx - w / 2, cy - h / 2, w, h)


def calibration_inputs(model: Union[SimTrack, ExportedModel], sequences: Sequence[PathLike],
                       samples: int = 32, seed: int = 0) -> List[Dict[str, np.ndarray]]:
    """Return ``samples`` search-graph inputs (batch 1, float32, by input name).

    Samples go round-robin over ``sequences`` (sequence folders; at most ``samples`` of them,
    evenly spaced, are used); each one's frame and jitter are drawn from ``seed``. ValueError
    when there are no sequences, a used sequence has no visible target, or ``samples`` < 1.
    """
    if samples < 1:
        raise ValueError(f'samples must be >= 1, got {samples}')
    if not sequences:
        raise ValueError('calibration needs at least one sequence folder, got none')
    options = TrackerOptions()
    config = model.config
    encode = _encoder(model)
    rng = np.random.default_rng(seed)
    chosen = np.unique(np.linspace(0, len(sequences) - 1, min(samples, len(sequences))).round())
    tracks = [read_sequence(sequences[int(i)]) for i in chosen]
    states = []
    for track in tracks:
        visible = _visible_frames(track)
        if not visible:
            raise ValueError(f'{track.path}: no frame with a visible target to calibrate on')
        first = visible[0]
        box = tuple(float(v) for v in track.boxes[first])
        template, window = _crop(track.frame(first), box, options.template_factor,
                                 config.template_size)
        anno = template_anno(box, config.template_size / window[2], config.template_size)
        later = [i for i in visible if i > first] or [first]
        states.append((encode(template, anno[None]), later))
    result = []
    for index in range(samples):
        track, (tokens, later) = tracks[index % len(tracks)], states[index % len(tracks)]
        frame_index = later[int(rng.integers(len(later)))]
        box = _jittered(track.boxes[frame_index], rng)
        search, _ = _crop(track.frame(frame_index), box, options.search_factor,
                          config.search_size)
        result.append(dict(zip(SEARCH_INPUTS, (tokens, search))))
    return result


def synthetic_calibration_sequences(folder: PathLike, count: int = 4, frames: int = 16,
                                    seed: int = 77) -> List[Path]:
    """Render ``count`` synthetic sequences of ``frames`` frames into ``folder``; their folders.

    A folder that already holds such a set (its ``list.txt`` names ``count`` sequences of
    ``frames`` frames) is reused. The set is rendered beside it and renamed into place, so an
    interrupted run leaves no half-written folder. ValueError if ``folder`` holds anything else.
    """
    folder = Path(folder)
    if (folder / LIST_FILE).is_file():
        paths = list_sequences(folder)
        if len(paths) == count and all(len(read_sequence(p)) == frames for p in paths):
            return paths
        raise ValueError(f'{folder}: holds other sequences than {count} of {frames} frames; '
                         'choose another folder')
    if folder.exists() and any(folder.iterdir()):
        raise ValueError(f'{folder}: exists and is not empty; choose another folder')
    temp = temporary_sibling(folder)
    try:
        generate_dataset(temp, {'': count}, SynthOptions(frames=frames), seed=seed,
                         progress=False)
        if folder.exists():
            folder.rmdir()
        os.replace(temp, folder)
    finally:
        shutil.rmtree(temp, ignore_errors=True)
    return list_sequences(folder)
