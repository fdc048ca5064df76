"""Accuracy guard: a reduced-precision or exported model is accepted only if it tracks like fp32.

The guard runs two :class:`~simtrack_ros.tracking.tracker.Tracker` objects over the same
held-out sequences with ground truth (one-pass evaluation, :func:`.runner.run_simtrack`): the
reference (PyTorch, fp32) and the candidate (another runtime, precision or exported file). The
candidate passes when

* its success AUC (:func:`.ope.summarize`) is at most :data:`AUC_TOLERANCE` (1 point) below
  the reference's (a higher AUC passes), and
* for the precisions in :data:`BOX_CHECKED_PRECISIONS` (fp32, fp16, bf16): its boxes stay
  within :data:`BOX_TOLERANCE_PX` of the reference's on a fixed clip, the first sequence's
  frames. On the clip both trackers see the same input every frame: before each frame the
  candidate's target is moved to the reference's previous box (:meth:`Tracker.reposition`),
  so the comparison measures the model's numerics, not a one-pass track that drifted once
  and differs for the rest of the clip. The box error of a frame is the largest difference of
  the four box edges, in pixels of the frame. int8 is judged on AUC alone (its boxes differ by
  pixels from fp32 by design); its box errors are still reported.

Otherwise :attr:`GuardResult.reasons` says which limit it missed and by how much. The result is
stored as JSON beside the exported search graph (``<name>.guard.json``, or
``<name>.<precision>.guard.json`` for a precision the file does not hold, e.g. bf16 on an fp32
file: ``ExportedModel.guard_file``) and read back by the node at start-up (:func:`read_guard`).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
import json
import os
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

from simtrack_ros.data.sequences import read_sequence, Sequence as DataSequence
from simtrack_ros.evaluation.ope import SequenceResult, summarize
from simtrack_ros.evaluation.runner import first_box, run_simtrack
from simtrack_ros.export.metadata import temporary_sibling
from simtrack_ros.tracking.tracker import Tracker

#: Largest accepted drop of the success AUC (0..1 scale): 1 point.
AUC_TOLERANCE = 0.01
#: Largest accepted box edge difference from fp32 on the clip, pixels.
BOX_TOLERANCE_PX = 1.0
#: Precisions whose boxes must stay within :data:`BOX_TOLERANCE_PX` of fp32 on the clip.
BOX_CHECKED_PRECISIONS = ('fp32', 'fp16', 'bf16')
#: Version of the JSON layout; a newer file is refused.
FORMAT_VERSION = 1
_POINTS = 100.0
#: JSON types of the fields (a number may be read as an int).
_FIELD_TYPES: Dict[str, tuple] = {
    **dict.fromkeys(('candidate', 'reference', 'precision', 'runtime'), (str,)),
    **dict.fromkeys(('auc_reference', 'auc_candidate', 'auc_drop', 'max_box_error_px',
                     'mean_box_error_px', 'auc_tolerance'), (int, float)),
    'sequences': (list,), 'reasons': (list,), 'frames': (int,), 'clip_frames': (int,),
    'passed': (bool,), 'box_tolerance_px': (int, float, type(None)),
}


class GuardFileError(ValueError):
    """A guard result file that cannot be read; the message names the file and the fault."""


@dataclass(frozen=True)
class GuardResult:
    """The verdict on one candidate against the fp32 reference.

    Attributes:
        candidate: what was judged (the exported search graph's path, or e.g.
            ``small torch bf16``).
        reference: the reference tracker (e.g. ``small torch fp32``).
        precision: the candidate's precision (``fp32``, ``fp16``, ``bf16``, ``int8``).
        runtime: the candidate's runtime (``torch``, ``onnxruntime``, ``openvino``).
        auc_reference: success AUC of the reference over ``sequences`` (0..1).
        auc_candidate: success AUC of the candidate.
        auc_drop: ``auc_reference - auc_candidate`` (negative: the candidate scored higher).
        max_box_error_px: largest box edge difference from the reference on the clip.
        mean_box_error_px: mean over the clip's frames of each frame's largest edge difference.
        sequences: names of the sequences; the first one is the clip.
        frames: frames scored for the AUC (evaluated frames, reference run).
        passed: True when every limit that applies was met.
        reasons: one sentence per missed limit, saying by how much; empty when passed.
        clip_frames: frames of the clip compared box by box.
        auc_tolerance: the AUC limit applied.
        box_tolerance_px: the box limit applied; None where boxes are not judged (int8).
    """

    candidate: str
    reference: str
    precision: str
    runtime: str
    auc_reference: float
    auc_candidate: float
    auc_drop: float
    max_box_error_px: float
    mean_box_error_px: float
    sequences: List[str]
    frames: int
    passed: bool
    reasons: List[str]
    clip_frames: int = 0
    auc_tolerance: float = AUC_TOLERANCE
    box_tolerance_px: Optional[float] = BOX_TOLERANCE_PX

    def summary(self) -> str:
        """One line: passed or missed, the AUCs and the box error (and the misses)."""
        verdict = 'passed' if self.passed else 'MISSED'
        limit = (f'not judged for {self.precision}' if self.box_tolerance_px is None
                 else f'limit {self.box_tolerance_px:g} px')
        boxes = f'boxes up to {self.max_box_error_px:.2f} px from fp32 ({limit})'
        line = (f'accuracy guard {verdict} for {self.runtime} {self.precision} '
                f'({self.candidate}): success AUC {self.auc_candidate:.3f} vs '
                f'{self.auc_reference:.3f} fp32 (drop {self.auc_drop * _POINTS:.1f} points, '
                f'limit {self.auc_tolerance * _POINTS:g}); {boxes}; {len(self.sequences)} '
                f'sequence(s), {self.frames} frames')
        return line if self.passed else f'{line}. {" ".join(self.reasons)}'

    def table(self) -> str:
        """Fixed-width table of both trackers' scores and the verdict (for the command)."""
        rows = [('tracker', 'runtime', 'precision', 'AUC'),
                (self.reference, 'torch', 'fp32', f'{self.auc_reference:.4f}'),
                (self.candidate, self.runtime, self.precision, f'{self.auc_candidate:.4f}')]
        width = max(len(row[0]) for row in rows)
        lines = [f'{row[0]:<{width}}  {row[1]:<11}  {row[2]:<9}  {row[3]:>6}' for row in rows]
        limit = ('not judged' if self.box_tolerance_px is None
                 else f'limit {self.box_tolerance_px:g} px')
        lines += [
            f'AUC drop: {self.auc_drop * _POINTS:.2f} points (limit '
            f'{self.auc_tolerance * _POINTS:g}) over {len(self.sequences)} sequence(s), '
            f'{self.frames} frames',
            f'box error on the clip {self.sequences[0]!r} ({self.clip_frames} frames): max '
            f'{self.max_box_error_px:.3f} px, mean {self.mean_box_error_px:.3f} px ({limit})',
            'PASSED' if self.passed else 'MISSED: ' + ' '.join(self.reasons)]
        return '\n'.join(lines)

    def to_json(self) -> str:
        """JSON text of every field, with a ``format_version``."""
        return json.dumps({'format_version': FORMAT_VERSION, **dataclasses.asdict(self)},
                          indent=2)

    @classmethod
    def from_json(cls, text: str, source: str) -> 'GuardResult':
        """Inverse of :meth:`to_json`; GuardFileError naming ``source`` for a bad text."""
        try:
            data = json.loads(text)
        except json.JSONDecodeError as error:
            raise GuardFileError(f'{source}: not a guard result (bad JSON: {error})') from None
        if not isinstance(data, dict):
            raise GuardFileError(f'{source}: not a guard result (JSON {type(data).__name__}, '
                                 'expected an object)')
        version = data.pop('format_version', None)
        if not isinstance(version, int) or version > FORMAT_VERSION:
            raise GuardFileError(f'{source}: guard format_version {version!r} is not one this '
                                 f'version reads (<= {FORMAT_VERSION}); run simtrack-guard again')
        fields = {field.name for field in dataclasses.fields(cls)}
        required = {field.name for field in dataclasses.fields(cls)
                    if field.default is dataclasses.MISSING}
        missing, unknown = sorted(required - set(data)), sorted(set(data) - fields)
        if missing or unknown:
            raise GuardFileError(f'{source}: not a guard result (missing {missing}, unknown '
                                 f'{unknown}); run simtrack-guard again')
        wrong = [name for name, kinds in _FIELD_TYPES.items()
                 if name in data and not isinstance(data[name], kinds)]
        if wrong:
            raise GuardFileError(f'{source}: not a guard result (wrong type of {wrong}); run '
                                 'simtrack-guard again')
        return cls(**data)


def write_guard(result: GuardResult, path: Union[str, Path]) -> Path:
    """Write ``result`` to ``path`` atomically (temporary file and rename); return the path."""
    path = Path(path)
    # A unique sibling made by open(), not mkstemp (0600): the node may run as another user.
    temporary = temporary_sibling(path)
    try:
        with open(temporary, 'x', encoding='utf-8') as stream:
            stream.write(result.to_json() + '\n')
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    return path


def read_guard(path: Union[str, Path]) -> Optional[GuardResult]:
    """Return the guard result stored at ``path``; None when there is no such file.

    GuardFileError (a ValueError) names the file when it exists but is not a guard result.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding='utf-8')
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as error:
        raise GuardFileError(f'{path}: cannot read the guard result ({error})') from None
    return GuardResult.from_json(text, str(path))


def box_errors(boxes: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Per frame, the largest difference of the four box edges (x1, y1, x2, y2), pixels.

    Both are N x 4 ``(x, y, w, h)``; a frame where either box is not finite counts as inf.
    """
    def edges(xywh: np.ndarray) -> np.ndarray:
        xywh = np.asarray(xywh, dtype=np.float64)
        return np.concatenate([xywh[:, :2], xywh[:, :2] + xywh[:, 2:]], axis=1)
    if np.shape(boxes) != np.shape(reference):
        raise ValueError(f'boxes {np.shape(boxes)} and reference {np.shape(reference)} differ '
                         'in shape')
    errors = np.abs(edges(boxes) - edges(reference)).max(axis=1)
    return np.where(np.isfinite(errors), errors, np.inf)


def clip_boxes(reference: Tracker, candidate: Tracker, sequence: DataSequence,
               frames: Optional[int] = None) -> Tuple[np.ndarray, np.ndarray]:
    """Boxes of both trackers on the clip, the candidate re-placed on the reference's box.

    Both start from the first frame's ground truth; before each later frame the candidate's
    target is moved to the reference's previous box, so both cut the same search crop.
    Returns (reference, candidate) ``N x 4`` boxes of the first ``frames`` frames (None: all).
    """
    count = len(sequence) if frames is None else min(frames, len(sequence))
    first = first_box(sequence)
    boxes = {'reference': np.zeros((count, 4)), 'candidate': np.zeros((count, 4))}
    ids = {}
    for role, tracker in (('reference', reference), ('candidate', candidate)):
        tracker.clear()
        ids[role] = tracker.initialize(sequence.frame(0), first)
        boxes[role][0] = first
    for index in range(1, count):
        frame = sequence.frame(index)
        candidate.reposition(ids['candidate'], boxes['reference'][index - 1])
        for role, tracker in (('reference', reference), ('candidate', candidate)):
            boxes[role][index] = tracker.track(frame)[0].box
    return boxes['reference'], boxes['candidate']


def describe_tracker(tracker: Tracker) -> str:
    """Name a tracker's model: the exported file, or config, runtime and precision."""
    search = getattr(tracker.model, 'search', None)
    if search is not None:
        return str(search)
    return f'{tracker.model.config.name} {tracker.engine.runtime} {tracker.engine.precision}'


def _check_pair(reference: Tracker, candidate: Tracker) -> None:
    if reference.engine.runtime != 'torch' or reference.engine.precision != 'fp32':
        raise ValueError('the guard reference must be the PyTorch fp32 tracker, got '
                         f'{describe_tracker(reference)}')
    ours, theirs = reference.model.config, candidate.model.config
    for name in ('template_size', 'search_size', 'class_names', 'multi_label'):
        if getattr(ours, name) != getattr(theirs, name):
            raise ValueError(f'the candidate {describe_tracker(candidate)} is not the reference '
                             f'model: {name} {getattr(theirs, name)!r} != {getattr(ours, name)!r}')


def _auc(summary: Dict[str, Any], what: str) -> float:
    value = summary['auc']
    if value is None:
        raise ValueError(f'no frame of the guard sequences has a ground-truth box to score '
                         f'({what}); give sequences with ground truth')
    return float(value)


def _reasons(auc_drop: float, auc_reference: float, auc_candidate: float,
             max_error: float, mean_error: float, clip: str,
             box_tolerance: Optional[float]) -> List[str]:
    reasons = []
    if round(auc_drop, 9) > AUC_TOLERANCE:      # 1 point itself passes
        reasons.append(
            f'Success AUC dropped {auc_drop * _POINTS:.1f} points ({auc_candidate:.3f} vs '
            f'{auc_reference:.3f} fp32), {(auc_drop - AUC_TOLERANCE) * _POINTS:.1f} points over '
            f'the {AUC_TOLERANCE * _POINTS:g}-point limit.')
    if box_tolerance is not None and not max_error <= box_tolerance:
        reasons.append(
            f'Boxes on the clip {clip!r} differ from fp32 by up to {max_error:.2f} px (mean '
            f'{mean_error:.2f} px), {max_error - box_tolerance:.2f} px over the '
            f'{box_tolerance:g} px limit.')
    return reasons


def run_guard(reference: Tracker, candidate: Tracker,
              sequences: Sequence[Union[str, Path, DataSequence]],
              clip_frames: Optional[int] = None, candidate_name: str = '',
              progress: Optional[Callable[[str], None]] = None) -> GuardResult:
    """Judge ``candidate`` against the fp32 PyTorch ``reference`` (see the module docstring).

    Both trackers run one-pass over every sequence (initialised with the first frame's
    ground-truth box) for the AUC. The clip is the first sequence, its first ``clip_frames``
    frames (None: all), compared with :func:`clip_boxes`. ``candidate_name`` overrides
    :func:`describe_tracker`; ``progress`` gets a line per sequence. ValueError: no sequences,
    a reference that is not fp32 PyTorch, a candidate of another model configuration, or
    sequences without ground truth to score.
    """
    if not sequences:
        raise ValueError('the accuracy guard needs at least one sequence with ground truth')
    if clip_frames is not None and clip_frames < 1:
        raise ValueError(f'clip_frames must be >= 1 (or None: all), got {clip_frames}')
    _check_pair(reference, candidate)
    runs: Dict[str, List[SequenceResult]] = {'reference': [], 'candidate': []}
    for item in sequences:
        sequence = item if isinstance(item, DataSequence) else read_sequence(item)
        for role, tracker in (('reference', reference), ('candidate', candidate)):
            runs[role].append(run_simtrack(tracker, sequence))
        if progress is not None:
            progress(f'guard: {sequence.name} ({len(sequence)} frames) done')
    summaries = {role: summarize(results) for role, results in runs.items()}
    auc_reference = _auc(summaries['reference'], 'reference')
    auc_candidate = _auc(summaries['candidate'], 'candidate')
    clip = sequences[0]
    clip = clip if isinstance(clip, DataSequence) else read_sequence(clip)
    errors = box_errors(*reversed(clip_boxes(reference, candidate, clip, clip_frames)))
    precision = str(candidate.engine.precision)
    box_tolerance = BOX_TOLERANCE_PX if precision in BOX_CHECKED_PRECISIONS else None
    auc_drop = auc_reference - auc_candidate
    clip_name = runs['reference'][0].name
    max_error, mean_error = float(errors.max()), float(errors.mean())
    reasons = _reasons(auc_drop, auc_reference, auc_candidate, max_error, mean_error,
                       clip_name, box_tolerance)
    return GuardResult(
        candidate=candidate_name or describe_tracker(candidate),
        reference=describe_tracker(reference), precision=precision,
        runtime=candidate.engine.runtime, auc_reference=auc_reference,
        auc_candidate=auc_candidate, auc_drop=auc_drop,
        max_box_error_px=max_error, mean_box_error_px=mean_error,
        sequences=[result.name for result in runs['reference']],
        frames=int(summaries['reference']['frames']), passed=not reasons, reasons=reasons,
        clip_frames=len(errors), auc_tolerance=AUC_TOLERANCE, box_tolerance_px=box_tolerance)
