"""What the demo saw, scored and drawn: metrics, summary text, annotated video, contact sheet.

ROS-free: the demo's client fills a :class:`Recording` from the messages it receives; this
module scores it against the sequences on disk (:mod:`simtrack_ros.evaluation.ope`) and draws
it. Frames the tracker skipped (the node infers on the newest frame only) keep the tracker's
last box, as VOT's real-time protocol does; the first frame of a sequence is its template.
"""
from __future__ import annotations

from dataclasses import dataclass, field
import json
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import cv2
import numpy as np

from simtrack_ros.challenges import CHALLENGE_LABELS, CHALLENGE_NAMES
from simtrack_ros.data.annotations import read_annotations
from simtrack_ros.data.sequences import Sequence as DiskSequence
from simtrack_ros.data.synthetic_dataset import ANNOTATION_FILE
from simtrack_ros.evaluation.ope import SequenceResult, summarize

Box = Tuple[float, float, float, float]
_FONT = cv2.FONT_HERSHEY_SIMPLEX
#: Colours (RGB): ground truth, tracker box, text.
TRUTH_COLOUR = (40, 230, 40)
TRACK_COLOUR = (255, 140, 0)
TEXT_COLOUR = (255, 255, 255)
#: Video containers to try, in order: (suffix, FourCC).
VIDEO_FORMATS = (('.mp4', 'mp4v'), ('.avi', 'MJPG'))


@dataclass
class FrameOutput:
    """What the tracker published for one frame of a sequence."""

    box: Box
    confidence: float
    challenge: Optional[Tuple[str, float]] = None
    probabilities: Optional[List[float]] = None


@dataclass
class SequenceRecord:
    """One sequence as the demo played it."""

    sequence: DiskSequence
    variants: Tuple[str, ...] = ()
    target_id: str = ''
    shown: int = 0
    outputs: Dict[int, FrameOutput] = field(default_factory=dict)
    #: When set_target was sent (monotonic seconds), and the seconds from then to the target's
    #: last published result.
    started_at: float = 0.0
    tracked_s: float = 0.0


@dataclass
class Recording:
    """The demo's run: the sequences and the tracker's outputs, plus the head's class set."""

    sequences: List[SequenceRecord]
    class_names: Tuple[str, ...] = ()
    multi_label: bool = False
    inference_ms: List[float] = field(default_factory=list)

    def played(self) -> List[SequenceRecord]:
        """Sequences whose target was set (their frames can be scored)."""
        return [s for s in self.sequences if s.target_id and s.shown > 0]


def held_boxes(record: SequenceRecord) -> np.ndarray:
    """Per shown frame: the tracker's box, else its last one (frame 0: the true box)."""
    boxes = np.array(record.sequence.boxes[:record.shown], dtype=np.float64)
    last = boxes[0].copy()
    for index in range(1, record.shown):
        output = record.outputs.get(index)
        if output is not None:
            last = np.asarray(output.box, dtype=np.float64)
        boxes[index] = last
    return boxes


def _labels(record: SequenceRecord) -> Tuple[np.ndarray, np.ndarray]:
    """Per shown frame: the synthetic label vector and judged mask (NaN / False: no record)."""
    labels = np.full((record.shown, len(CHALLENGE_NAMES)), np.nan)
    judged = np.zeros(labels.shape, dtype=bool)
    path = record.sequence.path / ANNOTATION_FILE
    if path.is_file():
        for item in read_annotations(path).records:
            if item.frame_index < record.shown:
                labels[item.frame_index] = item.multi_label()
                judged[item.frame_index] = item.judged_mask()
    return labels, judged


def sequence_result(record: SequenceRecord, class_names: Sequence[str],
                    multi_label: bool) -> SequenceResult:
    """Return the OPE input of a played sequence (probabilities where the head scored)."""
    sequence, count = record.sequence, record.shown
    absent = (np.zeros(count, dtype=bool) if sequence.absent is None
              else np.asarray(sequence.absent[:count], dtype=bool))
    probabilities = None
    if class_names:
        probabilities = np.full((count, len(class_names)), np.nan)
        for index, output in record.outputs.items():
            if output.probabilities is not None and index < count:
                probabilities[index] = output.probabilities
    labels, judged = _labels(record)
    return SequenceResult(
        name=sequence.name, boxes=held_boxes(record), gt=sequence.boxes[:count], absent=absent,
        seconds=np.zeros(count), probabilities=probabilities, class_names=tuple(class_names),
        multi_label=multi_label, labels=labels, judged=judged)


def score(recording: Recording) -> Dict[str, Any]:
    """Every OPE and classifier metric of the run, plus the demo's own frame and time counts.

    ``fps`` is the frames the tracker published per second of tracking (wall clock; at most the
    camera rate, since the node infers on the newest frame only).
    """
    played = recording.played()
    summary = summarize([sequence_result(r, recording.class_names, recording.multi_label)
                         for r in played])
    shown = sum(r.shown for r in recording.sequences)
    tracked = sum(len(r.outputs) for r in played)
    seconds = sum(r.tracked_s for r in played)
    summary.update({
        'frames_shown': shown, 'frames_tracked': tracked,
        'fps': tracked / seconds if seconds > 0 else None,
        'inference_ms': (float(np.mean(recording.inference_ms)) if recording.inference_ms
                         else None),
        'multi_label': recording.multi_label,
    })
    for record in played:
        summary['per_sequence'][record.sequence.name].update(
            variants=list(record.variants), target_id=record.target_id, shown=record.shown,
            tracked=len(record.outputs))
    return summary


def number(value: Optional[float], digits: int = 3) -> str:
    """``value`` with ``digits`` decimals, '-' for None."""
    return '-' if value is None else f'{value:.{digits}f}'


def challenge_scores(summary: Dict[str, Any]) -> Optional[Dict[str, Any]]:
    """Accuracy, macro-F1 (multi-label F1 for a multi-label head) and their baselines."""
    metrics = summary.get('classification')
    if not metrics:
        return None
    multi = metrics.get('multi_label') if summary.get('multi_label') else None
    source = multi or metrics
    return {'frames': metrics['samples'], 'accuracy': metrics['accuracy'],
            'macro_f1': source['macro_f1'], 'f1_kind': 'multi-label, p > 0.5' if multi else
            'top class', 'baseline_accuracy': metrics['baseline']['accuracy'],
            'baseline_macro_f1': source['baseline']['macro_f1'],
            'per_class_f1': source['per_class_f1']}


def headline(summary: Dict[str, Any]) -> str:
    """One line: success AUC, OP50, challenge accuracy and macro-F1, FPS."""
    challenge = challenge_scores(summary) or {}
    return (f'success AUC {number(summary["auc"])}  OP50 {number(summary["op50"])} | '
            f'challenge accuracy {number(challenge.get("accuracy"))}  macro-F1 '
            f'{number(challenge.get("macro_f1"))} | {number(summary["fps"], 1)} fps')


def summary_lines(summary: Dict[str, Any]) -> List[str]:
    """Return the console summary: totals, box scores, challenge scores, one line per sequence."""
    shown, tracked = summary['frames_shown'], summary['frames_tracked']
    lines = [f'summary: {summary["sequences"]} sequences, {shown} frames shown, {tracked} '
             f'tracked ({100.0 * tracked / max(shown, 1):.0f} %), '
             f'{number(summary["fps"], 1)} fps, inference {number(summary["inference_ms"], 1)}'
             ' ms/frame',
             f'  boxes vs ground truth ({summary["frames"]} frames): success AUC '
             f'{number(summary["auc"])}  OP50 {number(summary["op50"])}  OP75 '
             f'{number(summary["op75"])}  Prec@20px {number(summary["precision_20"])}']
    challenge = challenge_scores(summary)
    if challenge is None:
        lines.append('  challenges: no probabilities (untrained head) or no labels')
    else:
        lines.append(
            f'  challenges ({challenge["frames"]} frames): accuracy '
            f'{number(challenge["accuracy"])}  macro-F1 {number(challenge["macro_f1"])} '
            f'({challenge["f1_kind"]}); always-normal: accuracy '
            f'{number(challenge["baseline_accuracy"])}  macro-F1 '
            f'{number(challenge["baseline_macro_f1"])}')
    for name, item in summary['per_sequence'].items():
        lines.append(f'  {name}  {", ".join(item["variants"]):28s} {item["tracked"]:4d}/'
                     f'{item["shown"]:<4d} frames  AUC {number(item["auc"])}  OP50 '
                     f'{number(item["op50"])}')
    return lines


def _text(image: np.ndarray, text: str, origin: Tuple[int, int], colour=TEXT_COLOUR,
          scale: float = 0.45) -> int:
    """Draw ``text`` on a dark band at ``origin`` (top-left); return the band's height."""
    (width, height), baseline = cv2.getTextSize(text, _FONT, scale, 1)
    x, y = origin
    y = min(max(y, 0), max(image.shape[0] - height - baseline - 4, 0))
    x = min(max(x, 0), max(image.shape[1] - width - 4, 0))
    cv2.rectangle(image, (x, y), (x + width + 4, y + height + baseline + 4), (0, 0, 0), -1)
    cv2.putText(image, text, (x + 2, y + height + 2), _FONT, scale, colour, 1, cv2.LINE_AA)
    return height + baseline + 4


def _rectangle(image: np.ndarray, box: Sequence[float], colour, scale: float,
               thickness: int) -> None:
    if not np.all(np.isfinite(box)) or box[2] <= 0 or box[3] <= 0:
        return
    x, y, w, h = (v * scale for v in box)
    cv2.rectangle(image, (int(round(x)), int(round(y))), (int(round(x + w)),
                  int(round(y + h))), colour, thickness, cv2.LINE_AA)


def _truth_text(labels: np.ndarray) -> str:
    if not np.all(np.isfinite(labels)):
        return 'truth: -'
    names = [CHALLENGE_LABELS[n] for n, flag in zip(CHALLENGE_NAMES, labels) if flag]
    return 'truth: ' + ', '.join(names)


def annotate(record: SequenceRecord, index: int, box: np.ndarray, labels: np.ndarray,
             scale: float = 1.0, text_scale: float = 0.45) -> np.ndarray:
    """Frame ``index`` (RGB), resized by ``scale``, with truth, tracker box and captions."""
    image = record.sequence.frame(index)
    if scale != 1.0:
        image = cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    image = np.ascontiguousarray(image)
    truth = record.sequence.boxes[index]
    _rectangle(image, truth, TRUTH_COLOUR, scale, 1)
    output = record.outputs.get(index)
    line = _text(image, f'{record.sequence.name} #{index}', (0, 0), scale=text_scale)
    if index == 0:
        _text(image, f'template: {record.target_id} set', (0, line), TRUTH_COLOUR, text_scale)
    else:
        _rectangle(image, box, TRACK_COLOUR, scale, 2)
        state = 'no result (skipped frame)' if output is None else (
            f'{record.target_id} {output.confidence:.2f}')
        challenge = '' if output is None or output.challenge is None else (
            f' | {CHALLENGE_LABELS.get(output.challenge[0], output.challenge[0])} '
            f'{output.challenge[1]:.2f}')
        _text(image, state + challenge, (0, line), TRACK_COLOUR, text_scale)
    _text(image, _truth_text(labels), (0, image.shape[0]), TRUTH_COLOUR, text_scale)
    return image


def _frames_to_draw(recording: Recording):
    """Yield (record, frame index, box, labels) over every played sequence's shown frames."""
    for record in recording.played():
        boxes = held_boxes(record)
        labels, _ = _labels(record)
        for index in range(record.shown):
            yield record, index, boxes[index], labels[index]


def _video_frames_read(path: Path) -> int:
    capture = cv2.VideoCapture(str(path))
    count = 0
    while capture.isOpened():
        ok, _ = capture.read()
        if not ok:
            break
        count += 1
    capture.release()
    return count


def write_video(recording: Recording, stem: Path, fps: float) -> Tuple[Path, int]:
    """Write the annotated frames as ``stem.mp4`` (mp4v) or else ``stem.avi`` (MJPG).

    Returns the path and the frame count read back; OSError if no format writes a readable
    video.
    """
    played = recording.played()
    if not played:
        raise OSError('no sequence was played: no video')
    height, width = played[0].sequence.frame(0).shape[:2]
    problems = []
    for suffix, fourcc in VIDEO_FORMATS:
        path = stem.with_suffix(suffix)
        writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), fps,
                                 (width, height))
        if not writer.isOpened():
            problems.append(f'{fourcc} {suffix}: the writer did not open')
            continue
        written = 0
        for record, index, box, labels in _frames_to_draw(recording):
            image = annotate(record, index, box, labels)
            if image.shape[:2] != (height, width):
                image = cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA)
            writer.write(cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
            written += 1
        writer.release()
        read = _video_frames_read(path)
        if read > 0:
            return path, read
        problems.append(f'{fourcc} {suffix}: {written} frames written, none read back')
        path.unlink(missing_ok=True)
    raise OSError('no video written: ' + '; '.join(problems))


def _sheet_frames(record: SequenceRecord, columns: int) -> List[int]:
    """Frames for a contact-sheet row: spread over the sequence, tracked ones preferred."""
    tracked = sorted(record.outputs) or list(range(record.shown))
    picks = np.linspace(0, len(tracked) - 1, columns + 1)[1:]
    return sorted({tracked[int(round(p))] for p in picks})


def contact_sheet(recording: Recording, summary: Dict[str, Any], title: str,
                  columns: int = 4, tile_width: int = 400) -> np.ndarray:
    """Return the sheet (RGB): a title band, then per sequence a label and ``columns`` frames."""
    rows = []
    label_width = 190
    for record in recording.played():
        boxes = held_boxes(record)
        labels, _ = _labels(record)
        scale = tile_width / record.sequence.frame(0).shape[1]
        tiles = [annotate(record, i, boxes[i], labels[i], scale, 0.4)
                 for i in _sheet_frames(record, columns)]
        height = tiles[0].shape[0]
        tiles += [np.zeros_like(tiles[0])] * (columns - len(tiles))
        label = np.full((height, label_width, 3), 30, np.uint8)
        scores = summary['per_sequence'].get(record.sequence.name, {})
        lines = [record.sequence.name, 'staged: ' + ', '.join(record.variants),
                 f'target id: {record.target_id}', f'AUC {number(scores.get("auc"))}',
                 f'OP50 {number(scores.get("op50"))}']
        for row, line in enumerate(lines):
            cv2.putText(label, line, (6, 22 + 20 * row), _FONT, 0.42, TEXT_COLOUR, 1,
                        cv2.LINE_AA)
        rows.append(np.hstack([label] + [np.pad(t, ((0, height - t.shape[0]), (0, 0), (0, 0)))
                                         for t in tiles]))
    width = max(row.shape[1] for row in rows)
    band = np.full((56, width, 3), 20, np.uint8)
    cv2.putText(band, title, (8, 22), _FONT, 0.55, TEXT_COLOUR, 1, cv2.LINE_AA)
    cv2.putText(band, 'green: ground truth   orange: tracker (target id, confidence | top '
                'challenge, probability)   bottom: true challenges', (8, 46), _FONT, 0.45,
                (200, 200, 200), 1, cv2.LINE_AA)
    return np.vstack([band] + [np.pad(r, ((0, 0), (0, width - r.shape[1]), (0, 0)))
                               for r in rows])


def write_image(path: Path, image: np.ndarray, quality: int = 88) -> Path:
    """Write an RGB image (JPEG quality ``quality`` for .jpg); OSError if it does not read back."""
    jpeg = path.suffix.lower() in ('.jpg', '.jpeg')
    params = [cv2.IMWRITE_JPEG_QUALITY, quality] if jpeg else []
    if not cv2.imwrite(str(path), cv2.cvtColor(image, cv2.COLOR_RGB2BGR), params) or \
            cv2.imread(str(path)) is None:
        raise OSError(f'{path}: could not write the image')
    return path


def write_summary(path: Path, summary: Dict[str, Any]) -> Path:
    """Write the metrics as JSON."""
    path.write_text(json.dumps(summary, indent=1) + '\n', encoding='utf-8')
    return path
