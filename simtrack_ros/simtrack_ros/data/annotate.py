"""The annotation pipeline: a dataset in, ``annotations.jsonl`` per sequence out.

For every selected frame of every sequence (every ``every``-th frame, frames without a valid box
included) one :class:`~.annotations.FrameRecord` is written, from any combination of sources:

* ``dataset``: the free labels of the dataset's own files (:mod:`.dataset_labels`);
* ``cv``: the formulas of :mod:`.cv_metrics` (frames with a box inside the image only);
* ``vlm``: an OpenAI-compatible vision-language endpoint (:mod:`.vlm_annotator`); without one
  the record's ``vlm_response`` stays null, never invented. A frame whose request failed
  (after the client's retries) is logged and not written, so the next run asks again.
  Frames without a box (absent) are not sent.

The flags of the sources are merged by :data:`~.annotations.SOURCE_PRECEDENCE`. The template is
the sequence's first frame with a valid box (``template_bbox``), as in the design guide.

Resumable: records are appended one complete line at a time (:class:`~.annotations.
AnnotationWriter`), so a run killed at any point and started again skips the frames already
written, finishes a torn last line's frame again, and never writes one twice. Sequences run in
parallel processes (``workers``); VLM requests run ``concurrency`` at a time inside each.
"""
from __future__ import annotations

import argparse
import concurrent.futures
from dataclasses import dataclass, field, replace
import json
import logging
import multiprocessing
import os
from pathlib import Path
import sys
import time
from typing import Dict, Iterator, List, Optional, Sequence as Seq, Tuple

import numpy as np
from tqdm import tqdm

from simtrack_ros.data.annotation_summary import format_summary, summarize
from simtrack_ros.data.annotations import (AnnotationWriter, Flag, FrameRecord, merge_flags,
                                           response_flags)
from simtrack_ros.data.cv_metrics import cv_response, CvJudge, CvOptions
from simtrack_ros.data.dataset_labels import (LOW_RESOLUTION_AREA, SCALE_RATIO,
                                              sequence_labels)
from simtrack_ros.data.sequences import list_sequences, read_sequence, Sequence, \
    SequenceFormatError
from simtrack_ros.data.vlm_annotator import VlmAnnotator, VlmConfig, VlmItem

#: Sources this pipeline computes (``synthetic`` and ``human`` come with the data).
PIPELINE_SOURCES = ('dataset', 'cv', 'vlm')
DEFAULT_OUTPUT = 'annotations.jsonl'
_LOG = logging.getLogger(__name__)


@dataclass(frozen=True)
class AnnotateOptions:
    """What to annotate and how.

    Attributes:
        sources: any of ``dataset``, ``cv``, ``vlm`` (``vlm`` needs ``vlm``).
        every: annotate every ``every``-th frame (1: all), counting from frame 0.
        output: file name of the records inside each sequence folder.
        cv: thresholds of the CV metrics.
        vlm: the endpoint, or None.
        scale_ratio, min_area: OTB rules of the dataset labels.
        chunk: frames read and judged together (bounds memory; VLM requests in flight).
    """

    sources: Tuple[str, ...] = ('dataset', 'cv')
    every: int = 1
    output: str = DEFAULT_OUTPUT
    cv: CvOptions = field(default_factory=CvOptions)
    vlm: Optional[VlmConfig] = None
    scale_ratio: float = SCALE_RATIO
    min_area: float = LOW_RESOLUTION_AREA
    chunk: int = 16

    def __post_init__(self) -> None:
        unknown = sorted(set(self.sources) - set(PIPELINE_SOURCES))
        if unknown or not self.sources:
            raise ValueError(f'sources must be a non-empty subset of {PIPELINE_SOURCES}, '
                             f'got {list(self.sources)}')
        if 'vlm' in self.sources and self.vlm is None:
            raise ValueError("source 'vlm' needs an endpoint (VlmConfig: url and model)")
        if isinstance(self.every, bool) or not isinstance(self.every, int) or self.every < 1:
            raise ValueError(f'every must be an int >= 1, got {self.every!r}')
        if isinstance(self.chunk, bool) or not isinstance(self.chunk, int) or self.chunk < 1:
            raise ValueError(f'chunk must be an int >= 1, got {self.chunk!r}')
        if not self.output or Path(self.output).name != self.output:
            raise ValueError(f'output must be a file name, got {self.output!r}')


@dataclass
class SequenceReport:
    """What one sequence's run did."""

    name: str
    selected: int = 0
    written: int = 0
    skipped: int = 0
    vlm_failed: int = 0
    torn_line_repaired: bool = False
    seconds: float = 0.0
    error: str = ''


def xyxy(box: Seq[float]) -> Optional[Tuple[float, float, float, float]]:
    """Convert ``(x, y, w, h)`` to ``(x1, y1, x2, y2)``; None for a non-finite or empty box."""
    x, y, w, h = (float(v) for v in box)
    if not all(np.isfinite((x, y, w, h))) or w <= 0 or h <= 0:
        return None
    return (x, y, x + w, y + h)


def _inside(box: Seq[float], shape: Tuple[int, ...]) -> bool:
    x, y, w, h = box
    return x < shape[1] and y < shape[0] and x + w > 0 and y + h > 0


def _present(sequence: Sequence, index: int) -> bool:
    absent = sequence.absent is not None and bool(sequence.absent[index])
    return not absent and xyxy(sequence.boxes[index]) is not None


def _chunks(indexes: List[int], size: int) -> Iterator[List[int]]:
    for start in range(0, len(indexes), size):
        yield indexes[start:start + size]


def annotate_sequence(sequence: Sequence, options: AnnotateOptions,
                      progress: Optional[tqdm] = None) -> SequenceReport:
    """Write the records of ``sequence``'s selected frames that are not written yet."""
    start = time.monotonic()
    report = SequenceReport(sequence.name)
    template_index = next((i for i in range(len(sequence)) if _present(sequence, i)), None)
    selected = list(range(0, len(sequence), options.every))
    report.selected = len(selected)
    if template_index is None:
        report.error = 'no frame has a valid box: nothing to annotate'
        return report
    template_box = tuple(float(v) for v in sequence.boxes[template_index])
    dataset = (sequence_labels(sequence, scale_ratio=options.scale_ratio,
                               min_area=options.min_area)
               if 'dataset' in options.sources else None)
    judge = CvJudge(options.cv) if 'cv' in options.sources else None
    template_frame = sequence.frame(template_index) if judge or options.vlm else None
    with AnnotationWriter(sequence.path / options.output) as writer, \
            _vlm_client(options) as vlm:
        report.torn_line_repaired = writer.torn_bytes > 0
        done = writer.done_frames()
        todo = [i for i in selected if i not in done]
        report.skipped = len(selected) - len(todo)
        if progress is not None:
            progress.update(report.skipped)
        for chunk in _chunks(todo, options.chunk):
            frames = {i: sequence.frame(i) for i in chunk
                      if (judge or vlm) and _present(sequence, i)}
            answers = _ask_vlm(vlm, sequence, frames, template_frame, template_box)
            for index in chunk:
                if vlm is not None and index in frames and answers.get(index) is None:
                    report.vlm_failed += 1          # not written: the next run asks again
                    continue
                record = _record(sequence, index, template_box, frames.get(index),
                                 template_frame, judge, dataset, answers, options)
                writer.write(record)
                report.written += 1
                if progress is not None:
                    progress.update(1)
    report.seconds = time.monotonic() - start
    return report


class _NoVlm:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


def _vlm_client(options: AnnotateOptions):
    if 'vlm' in options.sources and options.vlm is not None:
        return VlmAnnotator(options.vlm)
    return _NoVlm()


def _ask_vlm(vlm: Optional[VlmAnnotator], sequence: Sequence, frames: Dict[int, np.ndarray],
             template_frame: Optional[np.ndarray], template_box: Seq[float]
             ) -> Dict[int, Optional[dict]]:
    """Return the VLM's answers by frame index (None where it failed)."""
    if vlm is None or not frames:
        return {}
    items = [VlmItem(frame, tuple(sequence.boxes[i]), template_frame, template_box, key=i)
             for i, frame in frames.items()]
    answers = {}
    for item, result in vlm.annotate_many(items):
        if result.error:
            _LOG.warning('%s frame %d: VLM failed after %d attempt(s): %s', sequence.name,
                         item.key, result.attempts, result.error)
        answers[item.key] = result.response
    return answers


def _record(sequence: Sequence, index: int, template_box: Seq[float],
            frame: Optional[np.ndarray], template_frame: Optional[np.ndarray],
            judge: Optional[CvJudge], dataset, answers: Dict[int, Optional[dict]],
            options: AnnotateOptions) -> FrameRecord:
    """Build the record of one frame from every requested source."""
    box = tuple(float(v) for v in sequence.boxes[index])
    present = frame is not None or _present(sequence, index)
    dataset_flags: Dict[str, Flag] = dataset[index].flags if dataset else {}
    visible_ratio = dataset[index].visible_ratio if dataset else None
    cv = None
    cv_flags: Dict[str, Flag] = {}
    if judge is not None and frame is not None and _inside(box, frame.shape):
        judgement = judge.judge(frame, box, template_frame, template_box)
        cv, cv_flags = cv_response(judgement), judgement.flags
    vlm = answers.get(index)
    vlm_flags = response_flags(vlm, None) if vlm else {}
    return FrameRecord(
        sequence_name=sequence.name,
        frame_file=sequence.frame_files[index].relative_to(sequence.path).as_posix(),
        frame_index=index, template_bbox=xyxy(template_box),
        ground_truth_bbox=xyxy(box) if present else None,
        vlm_response=vlm, cv_response=cv,
        flags=merge_flags(dataset_flags, vlm_flags, cv_flags), visible_ratio=visible_ratio)


def _run_one(path: Path, options: AnnotateOptions) -> SequenceReport:
    """Annotate one sequence in a worker process (errors become the report's ``error``)."""
    try:
        return annotate_sequence(read_sequence(path), options)
    except (SequenceFormatError, OSError, ValueError) as exc:
        return SequenceReport(path.name, error=f'{type(exc).__name__}: {exc}')


def annotate_dataset(paths: Seq[Path], options: AnnotateOptions, workers: int = 1,
                     show_progress: bool = True) -> List[SequenceReport]:
    """Annotate every sequence in ``paths`` (in parallel processes when ``workers`` > 1)."""
    reports: List[SequenceReport] = []
    if workers <= 1:
        for path in tqdm(paths, desc='sequences', unit='seq', disable=not show_progress):
            reports.append(_run_one(path, options))
        return reports
    context = multiprocessing.get_context('spawn')
    with concurrent.futures.ProcessPoolExecutor(workers, mp_context=context) as pool:
        futures = [pool.submit(_run_one, path, options) for path in paths]
        for future in tqdm(concurrent.futures.as_completed(futures), total=len(futures),
                           desc='sequences', unit='seq', disable=not show_progress):
            reports.append(future.result())
    return sorted(reports, key=lambda report: report.name)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog='simtrack-annotate',
        description='Label the frames of a tracking dataset (GOT-10k/MVTD layout) with tracking '
                    'challenges: writes <sequence>/annotations.jsonl, resumably.')
    parser.add_argument('root', type=Path, help='dataset root, split folder or one sequence')
    parser.add_argument('--split', help='train, val or test folder of the root')
    parser.add_argument('--sources', default='dataset,cv',
                        help=f'comma-separated, any of {",".join(PIPELINE_SOURCES)} '
                             '(default: dataset,cv)')
    parser.add_argument('--every', type=int, default=1, help='annotate every N-th frame')
    parser.add_argument('--output', default=DEFAULT_OUTPUT,
                        help=f'record file name in each sequence folder ({DEFAULT_OUTPUT})')
    parser.add_argument('--workers', type=int, default=1, help='sequences in parallel')
    parser.add_argument('--reference', default=None,
                        help='record file name to compare the sources with (e.g. the '
                             "generator's annotations.jsonl when --output is another file)")
    parser.add_argument('--summary-json', type=Path, help='also write the summary here')
    parser.add_argument('--summary-only', action='store_true',
                        help='annotate nothing; summarise the existing records')
    vlm = parser.add_argument_group('VLM endpoint (OpenAI-compatible chat completions)')
    vlm.add_argument('--vlm-url', help='e.g. http://localhost:8000/v1')
    vlm.add_argument('--vlm-model', help='model name as the server knows it')
    vlm.add_argument('--vlm-api-key-env', help='environment variable holding the API key')
    vlm.add_argument('--vlm-timeout', type=float, default=60.0, help='seconds per attempt')
    vlm.add_argument('--vlm-retries', type=int, default=3, help='retries per frame')
    vlm.add_argument('--vlm-concurrency', type=int, default=8, help='requests in flight')
    vlm.add_argument('--vlm-no-json-mode', action='store_true',
                     help='do not send response_format json_object (servers that reject it)')
    cv = parser.add_argument_group('CV metric thresholds (docs/data.md)')
    for name, value in CvOptions().__dict__.items():
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            cv.add_argument(f'--cv-{name.replace("_", "-")}', type=type(value), default=value,
                            dest=f'cv_{name}')
    return parser


def _options(args: argparse.Namespace) -> AnnotateOptions:
    sources = tuple(s.strip() for s in args.sources.split(',') if s.strip())
    vlm = None
    if args.vlm_url or args.vlm_model:
        if not (args.vlm_url and args.vlm_model):
            raise ValueError('--vlm-url and --vlm-model go together')
        vlm = VlmConfig(url=args.vlm_url, model=args.vlm_model,
                        api_key_env=args.vlm_api_key_env, timeout_s=args.vlm_timeout,
                        max_retries=args.vlm_retries, concurrency=args.vlm_concurrency,
                        json_mode=not args.vlm_no_json_mode)
        if 'vlm' not in sources:
            sources += ('vlm',)
    elif 'vlm' in sources:
        raise ValueError('--sources vlm needs an endpoint: pass --vlm-url URL and --vlm-model '
                         'NAME (an OpenAI-compatible server, e.g. http://localhost:8000/v1)')
    cv = replace(CvOptions(), **{name[3:]: value for name, value in vars(args).items()
                                 if name.startswith('cv_')})
    return AnnotateOptions(sources=sources, every=args.every, output=args.output, cv=cv,
                           vlm=vlm)


def _paths(root: Path, split: Optional[str]) -> List[Path]:
    if (root / 'groundtruth.txt').is_file() or (root / 'groundtruth_rect.txt').is_file():
        return [root]
    return list_sequences(root, split)


def main(argv: Optional[Seq[str]] = None) -> int:
    """Run the console script ``simtrack-annotate``; return the exit status."""
    logging.basicConfig(level=logging.INFO, format='%(levelname)s %(name)s: %(message)s')
    args = _parser().parse_args(argv)
    try:
        options = _options(args)
        paths = _paths(args.root, args.split)
    except (ValueError, SequenceFormatError, OSError) as exc:
        print(f'simtrack-annotate: error: {exc}', file=sys.stderr)
        return 2
    if not paths:
        print(f'simtrack-annotate: error: no sequences under {args.root}', file=sys.stderr)
        return 2
    failed: List[SequenceReport] = []
    if not args.summary_only:
        start = time.monotonic()
        reports = annotate_dataset(paths, options, args.workers)
        seconds = time.monotonic() - start
        written = sum(r.written for r in reports)
        failed = [r for r in reports if r.error]
        vlm_failed = sum(r.vlm_failed for r in reports)
        print(f'annotated {written} frame(s) of {len(reports)} sequence(s) in {seconds:.1f} s '
              f'({written / max(seconds, 1e-9):.1f} frames/s); skipped (already done): '
              f'{sum(r.skipped for r in reports)}; VLM failures (not written, run again to '
              f'retry): {vlm_failed}')
        for report in failed:
            print(f'  {report.name}: {report.error}', file=sys.stderr)
    summary = summarize(paths, options.output, args.reference,
                        scale_ratio=options.scale_ratio, min_area=options.min_area)
    print(format_summary(summary))
    if args.summary_json:
        args.summary_json.write_text(json.dumps(summary, indent=2, allow_nan=False) + '\n')
    return 1 if failed else 0


if __name__ == '__main__':
    os.environ.setdefault('OMP_NUM_THREADS', '1')
    sys.exit(main())
