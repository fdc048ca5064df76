"""Run trackers over sequences (one-pass evaluation), in parallel processes.

One-pass evaluation (OPE): each tracker is initialised once, on the first frame with its
ground-truth box, then runs on every later frame, absent ones included; nothing is
re-initialised when the target re-appears. The timed part of a frame is the tracker call
(not the frame decoding). SimTrack's class probabilities are kept per frame and the
sequence's ``annotations.jsonl`` labels are attached by class name, for the classifier
metrics of :func:`~simtrack_ros.evaluation.ope.summarize`.

Workers are spawned processes (``workers`` > 1); each loads the checkpoint once and runs
whole sequences. With several workers the trackers share the CPU, so the FPS is lower than
in a run with one worker.
"""
from __future__ import annotations

from concurrent.futures import as_completed, ProcessPoolExecutor
from dataclasses import dataclass
import logging
import multiprocessing
from multiprocessing.connection import Connection
import os
from pathlib import Path
import time
from typing import Callable, Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np
import torch
from tqdm import tqdm

from simtrack_ros.challenges import CHALLENGE_NAMES
from simtrack_ros.data.annotations import read_annotations
from simtrack_ros.data.sequences import read_sequence, Sequence as DataSequence
from simtrack_ros.evaluation.baselines import OpenCVTracker
from simtrack_ros.evaluation.ope import SequenceResult
from simtrack_ros.export.weights_file import load_weights
from simtrack_ros.tracking.challenge_cues import CUE_NAMES
from simtrack_ros.tracking.engine import EngineOptions
from simtrack_ros.tracking.tracker import Tracker, TrackerOptions

LOG = logging.getLogger(__name__)
ANNOTATION_FILE = 'annotations.jsonl'
#: Name of the SimTrack entry in the results.
SIMTRACK = 'simtrack'


class TrackerFailure(RuntimeError):
    """A tracker failed on a sequence; the message names both."""


@dataclass(frozen=True)
class TrackerSpec:
    """What a worker builds: SimTrack from ``weights``, or an OpenCV baseline.

    ``weights`` is a .pth checkpoint or an exported .onnx file, run on ``device`` with
    ``runtime`` at ``precision``, cutting search crops of ``search_factor`` times the
    target's scale; ``measure_cues`` records the head's logits and the challenge cues per frame
    (what ``simtrack-calibrate`` fits on).
    """

    name: str
    weights: Optional[str] = None
    device: str = 'cpu'
    precision: str = 'fp32'
    runtime: str = 'torch'
    search_factor: float = TrackerOptions.search_factor
    measure_cues: bool = False


def read_labels(sequence: DataSequence, file_name: str = ANNOTATION_FILE
                ) -> Tuple[Optional[np.ndarray], Optional[np.ndarray]]:
    """(labels, judged) of a sequence's annotation file, N x len(CHALLENGE_NAMES) each.

    ``labels`` rows are ``FrameRecord.multi_label()`` (NaN rows for frames without a record),
    ``judged`` rows ``judged_mask()``; (None, None) when the file does not exist. Bad lines
    are logged and skipped.
    """
    path = sequence.path / file_name
    if not path.is_file():
        return None, None
    read = read_annotations(path)
    for line, reason in read.errors:
        LOG.warning('%s:%d: %s (line skipped)', path, line, reason)
    shape = (len(sequence), len(CHALLENGE_NAMES))
    labels, judged = np.full(shape, np.nan), np.zeros(shape, dtype=bool)
    for record in read.records:
        if record.frame_index >= len(sequence):
            LOG.warning('%s: frame_index %d is past the %d frames (record skipped)',
                        path, record.frame_index, len(sequence))
            continue
        labels[record.frame_index] = record.multi_label()
        judged[record.frame_index] = record.judged_mask().astype(bool)
    return labels, judged


def first_box(sequence: DataSequence) -> np.ndarray:
    box = sequence.boxes[0]
    absent = sequence.absent is not None and bool(sequence.absent[0])
    if absent or not (np.isfinite(box).all() and (box[2:] > 0).all()):
        raise ValueError(f'{sequence.path}: the first frame has no target box; one-pass '
                         'evaluation starts from it')
    return box


def _timed(call: Callable[[], object]) -> Tuple[object, float]:
    start = time.perf_counter()
    out = call()
    return out, time.perf_counter() - start


def run_simtrack(tracker: Tracker, sequence: DataSequence) -> SequenceResult:
    """Track ``sequence`` with SimTrack (one target), keeping the class probabilities.

    With a tracker that measures cues, the head's logits and the cues are kept too.
    """
    count = len(sequence)
    first = first_box(sequence)
    boxes, seconds = np.zeros((count, 4)), np.zeros(count)
    names = tracker.class_names
    probabilities = np.full((count, len(names)), np.nan) if tracker.has_probabilities else None
    recorded = tracker.has_probabilities and tracker.measures_cues
    logits = np.full((count, len(names)), np.nan) if recorded else None
    cues = np.full((count, len(CUE_NAMES)), np.nan) if recorded else None
    tracker.clear()
    _, seconds[0] = _timed(lambda: tracker.initialize(sequence.frame(0), first, SIMTRACK))
    boxes[0] = first
    for index in range(1, count):
        frame = sequence.frame(index)
        results, seconds[index] = _timed(lambda: tracker.track(frame))
        result = results[0]
        boxes[index] = result.box
        if probabilities is not None and result.probabilities is not None:
            probabilities[index] = result.probabilities
        if recorded and result.logits is not None and result.cues is not None:
            logits[index], cues[index] = result.logits, result.cues
    return _result(sequence, boxes, seconds, probabilities, names,
                   bool(tracker.model.config.multi_label), logits, cues)


def run_baseline(tracker: OpenCVTracker, sequence: DataSequence) -> SequenceResult:
    """Track ``sequence`` with an OpenCV tracker."""
    count = len(sequence)
    first = first_box(sequence)
    boxes, seconds = np.zeros((count, 4)), np.zeros(count)
    _, seconds[0] = _timed(lambda: tracker.initialize(sequence.frame(0), first))
    boxes[0] = first
    for index in range(1, count):
        frame = sequence.frame(index)
        boxes[index], seconds[index] = _timed(lambda: tracker.track(frame))
    return _result(sequence, boxes, seconds)


def _result(sequence: DataSequence, boxes: np.ndarray, seconds: np.ndarray,
            probabilities: Optional[np.ndarray] = None, class_names: Sequence[str] = (),
            multi_label: bool = False, logits: Optional[np.ndarray] = None,
            cues: Optional[np.ndarray] = None) -> SequenceResult:
    """Build a run's result with the sequence's ground truth and annotation labels."""
    absent = (np.zeros(len(sequence), dtype=bool) if sequence.absent is None
              else np.asarray(sequence.absent, dtype=bool))
    labels, judged = read_labels(sequence)
    return SequenceResult(sequence.name, boxes, sequence.boxes, absent, seconds, probabilities,
                          tuple(class_names), multi_label, labels, judged, logits, cues)


#: Per-process cache of SimTrack trackers, keyed by spec.
_TRACKERS: Dict[TrackerSpec, Tracker] = {}


def simtrack_tracker(spec: TrackerSpec) -> Tracker:
    """Return the SimTrack tracker of ``spec``, built once per process (one checkpoint read)."""
    if spec not in _TRACKERS:
        model = load_weights(spec.weights)
        engine = EngineOptions(device=spec.device, precision=spec.precision,
                               runtime=spec.runtime)
        options = TrackerOptions(search_factor=spec.search_factor,
                                 measure_cues=spec.measure_cues, engine=engine)
        _TRACKERS[spec] = Tracker(model, options, checkpoint=Path(spec.weights))
    return _TRACKERS[spec]


def release_simtrack_tracker(spec: TrackerSpec) -> None:
    """Drop this process's tracker of ``spec`` (model and engine), if it built one."""
    _TRACKERS.pop(spec, None)


def _baseline_child(send: Connection, name: str, path: str) -> None:
    try:
        send.send((True, run_baseline(OpenCVTracker(name), read_sequence(path))))
    except Exception as error:  # reported to the parent, which raises it
        send.send((False, f'{type(error).__name__}: {error}'))
    finally:
        send.close()


def _baseline_context() -> multiprocessing.context.BaseContext:
    """Return the fork-server context of the baseline children (its server imports this module)."""
    context = multiprocessing.get_context('forkserver')
    context.set_forkserver_preload([__name__])
    return context


def run_baseline_isolated(name: str, path: str) -> SequenceResult:
    """Run an OpenCV baseline over one sequence in a child of a clean fork server.

    OpenCV's MIL and TLD draw from random-generator state that lives in the process and that
    Python cannot reset (``cv2.setRNGSeed`` does not reach it), so their result would depend
    on what ran before. A fork starts from the state of the process that forks it: the
    children come from multiprocessing's fork server, which never runs a baseline (a plain
    fork of the caller would inherit whatever the caller ran), so a sequence's result is the
    same in any order, with any number of workers and after anything else. A crash or an
    error raises TrackerFailure instead of ending the run.
    """
    context = _baseline_context()
    receive, send = context.Pipe(duplex=False)
    child = context.Process(target=_baseline_child, args=(send, name, path), daemon=True)
    child.start()
    send.close()
    try:
        ok, payload = receive.recv()
    except EOFError:
        child.join()
        raise TrackerFailure(f'baseline {name} crashed on {path} (exit code {child.exitcode})'
                             ) from None
    finally:
        receive.close()
    child.join()
    if not ok:
        raise TrackerFailure(f'baseline {name} on {path}: {payload}')
    return payload


def run_sequence(spec: TrackerSpec, path: str) -> SequenceResult:
    """Run one tracker over the sequence at ``path``."""
    if spec.weights is None:
        return run_baseline_isolated(spec.name, path)
    return run_simtrack(simtrack_tracker(spec), read_sequence(path))


def _job(job: Tuple[TrackerSpec, str]) -> Tuple[str, str, SequenceResult]:
    """Run a job; any failure becomes a TrackerFailure naming the tracker and the sequence.

    (Some exceptions, e.g. SequenceFormatError, cannot be unpickled, which would break the
    process pool instead of reporting the cause.)
    """
    spec, path = job
    try:
        return spec.name, path, run_sequence(spec, path)
    except TrackerFailure:
        raise
    except Exception as error:
        raise TrackerFailure(f'{spec.name} on {path}: {type(error).__name__}: {error}'
                             ) from None


def _worker_setup(threads: int) -> None:
    torch.set_num_threads(threads)


def _results(jobs: List[Tuple[TrackerSpec, str]], workers: int
             ) -> Iterator[Tuple[str, str, SequenceResult]]:
    """Job results as they finish; a worker that dies raises BrokenProcessPool."""
    if workers <= 1 or len(jobs) <= 1:
        yield from map(_job, jobs)
        return
    workers = min(workers, len(jobs))
    threads = max(1, (os.cpu_count() or 1) // workers)
    with ProcessPoolExecutor(workers, multiprocessing.get_context('spawn'),
                             initializer=_worker_setup, initargs=(threads,)) as pool:
        try:
            for future in as_completed([pool.submit(_job, job) for job in jobs]):
                yield future.result()
        except BaseException:
            pool.shutdown(wait=False, cancel_futures=True)  # stop at the first failure
            raise


def evaluate(specs: Sequence[TrackerSpec], sequences: Sequence[Path], workers: int = 1,
             progress: bool = True) -> Dict[str, List[SequenceResult]]:
    """Run every tracker over every sequence; results per tracker, in sequence order.

    Every job is one (tracker, sequence) pair, queued sequence by sequence with the trackers
    in ``specs`` order, so a pool of ``workers`` processes stays busy. The first failure stops
    the run with a :class:`TrackerFailure` that names the tracker and the sequence.
    """
    jobs = [(spec, str(path)) for path in sequences for spec in specs]
    found: Dict[Tuple[str, str], SequenceResult] = {}
    with tqdm(total=len(jobs), unit='run', disable=not progress,
              desc='evaluating') as bar:
        for name, path, result in _results(jobs, workers):
            found[name, path] = result
            bar.set_postfix_str(f'{name} {result.name}', refresh=False)
            bar.update()
    return {spec.name: [found[spec.name, str(path)] for path in sequences] for spec in specs}
