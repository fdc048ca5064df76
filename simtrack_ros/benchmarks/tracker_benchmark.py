"""Per-frame tracker latency (crop, upload, forward, post) against a naive official baseline.

Every (model config, number of targets) group runs its runners interleaved frame by frame,
in a rotating order, so that a noisy host affects all alike:

* ``baseline``: the official procedure written plainly: per target ``sample_target`` on the
  CPU, upload, ``model.forward(template, search, template_anno)`` (the full backbone every
  frame, fp32, eager), map back, ``clip_box``; one target after the other.
* the :class:`~simtrack_ros.tracking.Tracker` variants: CPU fp32 and bf16 (exact OpenCV crops),
  and on CUDA, when present, fp32/fp16/bf16 with and without CUDA Graphs (on-device crops).

Before that, the two crop paths alone (search crops of the same targets, the model input
ready on the device): the OpenCV path (``crop_and_resize`` per target, upload, normalise)
against :func:`~simtrack_ros.tracking.preprocess.crop_on_device` (frame upload, one batched
gather); they give identical model inputs.

Weights are random (timing does not depend on them). The output starts with the machine
(CPU model and flags, torch threads). Usage::

    python benchmarks/tracker_benchmark.py [--quick] [--configs tiny,simtrack-b16]
        [--targets 1,8] [--frames N] [--crops-only] [--json out.json]
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from typing import Callable, Dict, List, Sequence, Tuple

from machine_info import machine_header, machine_info
import numpy as np
import torch

from simtrack_ros.model import build_model
from simtrack_ros.model.config import get_config
from simtrack_ros.tracking import EngineOptions, TIMING_KEYS, Tracker, TrackerOptions
from simtrack_ros.tracking.crop import (
    clip_box, crop_and_resize, crop_window, map_box_back, sample_target, template_anno)
from simtrack_ros.tracking.preprocess import crop_on_device, normalize, stack_crops

FRAME_HEIGHT, FRAME_WIDTH = 720, 1280
#: Measured frames (and warm-up frames) per config: (normal, --quick).
FRAMES = {'tiny': (20, 5), 'simtrack-b16': (9, 3)}
DEFAULT_FRAMES = (5, 2)
WARMUP = (2, 1)
#: Timed rounds of the crop comparison: (normal, --quick).
CROP_ROUNDS = (30, 8)
BOX_SIZES = (40, 64, 96, 128, 160, 200, 56, 80)
MS = 1e3
Box = Tuple[float, float, float, float]


def make_frames(count: int = 2, seed: int = 0) -> List[np.ndarray]:
    """Textured 1280x720 RGB frames (the content does not change the cost)."""
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (FRAME_HEIGHT, FRAME_WIDTH, 3), dtype=np.uint8)
            for _ in range(count)]


def make_boxes(targets: int) -> List[Box]:
    """Targets of different sizes spread over the frame."""
    boxes = []
    for index in range(targets):
        size = BOX_SIZES[index % len(BOX_SIZES)]
        col, row = index % 4, index // 4 % 2
        boxes.append((150.0 + 300 * col, 150.0 + 300 * row, float(size), size * 0.75))
    return boxes


def sync(device: torch.device) -> None:
    if device.type == 'cuda':
        torch.cuda.synchronize(device)


class Baseline:
    """The official tracker, one target at a time, written plainly."""

    def __init__(self, model: torch.nn.Module, device: torch.device) -> None:
        self.model, self.device = model.to(device).eval(), device
        self.config = model.config
        self.factors = TrackerOptions()   # the official test-time crop factors
        self.targets: List[Dict] = []

    def initialize(self, frame: np.ndarray, box: Box) -> None:
        config = self.config
        crop, factor = sample_target(frame, box, self.factors.template_factor,
                                     config.template_size)
        template = normalize(torch.from_numpy(crop).permute(2, 0, 1)[None].to(self.device))
        anno = torch.from_numpy(template_anno(box, factor, config.template_size))[None]
        self.targets.append({'template': template, 'anno': anno.to(self.device), 'box': box})

    def track(self, frame: np.ndarray) -> Dict[str, float]:
        config, times = self.config, dict.fromkeys(TIMING_KEYS, 0.0)
        height, width = frame.shape[:2]
        for target in self.targets:
            start = time.perf_counter()
            crop, factor = sample_target(frame, target['box'], self.factors.search_factor,
                                         config.search_size)
            cropped = time.perf_counter()
            search = normalize(torch.from_numpy(crop).permute(2, 0, 1)[None].to(self.device))
            sync(self.device)
            uploaded = time.perf_counter()
            with torch.no_grad():
                out = self.model(target['template'], search, target['anno'],
                                 run_cls_head=False)
            pred = out['pred_boxes'].view(-1, 4).mean(dim=0).cpu().tolist()
            forwarded = time.perf_counter()
            box = map_box_back(pred, target['box'], factor, config.search_size)
            target['box'] = clip_box(box, height, width)
            done = time.perf_counter()
            for key, value in (('crop', cropped - start), ('upload', uploaded - cropped),
                               ('forward', forwarded - uploaded), ('post', done - forwarded),
                               ('total', done - start)):
                times[key] += value * MS
        return times


def crop_rows(target_counts: Sequence[int], quick: bool, cuda: bool) -> List[Dict]:
    """Median ms per frame of the OpenCV crop path and the device crop path, interleaved."""
    frame = make_frames(1)[0]
    size = get_config('simtrack-b16').search_size
    factor = TrackerOptions().search_factor
    devices = [torch.device('cpu')] + ([torch.device('cuda')] if cuda else [])
    rows = []
    for device in devices:
        for targets in target_counts:
            windows = [crop_window(box, factor) for box in make_boxes(targets)]

            def opencv_path() -> torch.Tensor:
                crops = [crop_and_resize(frame, window, size) for window in windows]
                return normalize(stack_crops(crops).to(device))

            def device_path() -> torch.Tensor:
                return crop_on_device(torch.from_numpy(frame).to(device), windows, size)

            assert torch.equal(opencv_path(), device_path())   # also the warm-up
            times: Dict[str, List[float]] = {'cv2': [], 'device': []}
            for index in range(CROP_ROUNDS[quick]):
                order = (('cv2', opencv_path), ('device', device_path))
                for name, path in order[index % 2:] + order[:index % 2]:
                    start = time.perf_counter()
                    path()
                    sync(device)
                    times[name].append((time.perf_counter() - start) * MS)
            rows.append({'device': device.type, 'targets': targets, 'size': size,
                         'cv2_ms': statistics.median(times['cv2']),
                         'device_ms': statistics.median(times['device'])})
    return rows


def format_crop_table(rows: Sequence[Dict]) -> str:
    """Fixed-width table of the crop comparison."""
    lines = [f'crop paths: {FRAME_WIDTH}x{FRAME_HEIGHT} frame, search crops '
             f'({rows[0]["size"]} px, identical output); median ms per frame',
             '{:<7} {:>7} {:>10} {:>12} {:>11}'.format(
                 'device', 'targets', 'cv2 crop', 'device crop', 'device/cv2')]
    for row in rows:
        lines.append('{:<7} {:>7} {:>10.2f} {:>12.2f} {:>10.1f}x'.format(
            row['device'], row['targets'], row['cv2_ms'], row['device_ms'],
            row['device_ms'] / row['cv2_ms']))
    return '\n'.join(lines)


def variants(cuda: bool) -> List[Tuple[str, EngineOptions]]:
    """Tracker variants to time on this machine."""
    found = [(f'cpu {p}', EngineOptions(device='cpu', precision=p)) for p in ('fp32', 'bf16')]
    if cuda:
        found = [(f'cuda {p}{" graphs" if graphs else ""}',
                  EngineOptions(device='cuda', precision=p, cuda_graphs=graphs))
                 for p in ('fp32', 'fp16', 'bf16') for graphs in (False, True)]
    return found


def tracker_step(tracker: Tracker) -> Callable[[np.ndarray], Dict[str, float]]:
    def step(frame: np.ndarray) -> Dict[str, float]:
        start = time.perf_counter()
        results = tracker.track(frame)
        times = dict(results[0].timings)
        times['total'] = (time.perf_counter() - start) * MS
        return times
    return step


def run_group(config: str, targets: int, quick: bool, frames_override: int,
              cuda: bool) -> List[Dict]:
    """Time the baseline and every variant for one config and target count."""
    torch.manual_seed(0)
    model = build_model(config)
    frames = make_frames()
    boxes = make_boxes(targets)
    device = torch.device('cuda' if cuda else 'cpu')
    runners: Dict[str, Callable[[np.ndarray], Dict[str, float]]] = {}
    baseline = Baseline(model, device)
    for box in boxes:
        baseline.initialize(frames[0], box)
    runners['baseline (official, fp32)'] = baseline.track
    for name, options in variants(cuda):
        tracker = Tracker(model, TrackerOptions(engine=options))
        for box in boxes:
            tracker.initialize(frames[0], box)
        runners[name] = tracker_step(tracker)
    measured = frames_override or FRAMES.get(config, DEFAULT_FRAMES)[quick]
    warmup = WARMUP[quick]
    samples: Dict[str, List[Dict[str, float]]] = {name: [] for name in runners}
    names = list(runners)
    for index in range(warmup + measured):
        frame = frames[index % len(frames)]
        shift = index % len(names)   # rotate the order so no runner always goes first
        for name in names[shift:] + names[:shift]:
            times = runners[name](frame)
            if index >= warmup:
                samples[name].append(times)
    rows = []
    for name, times in samples.items():
        row = {'config': config, 'targets': targets, 'variant': name, 'frames': len(times)}
        row.update({key: statistics.median(t[key] for t in times) for key in TIMING_KEYS})
        rows.append(row)
    reference = rows[0]['total']
    for row in rows:
        row['speedup'] = reference / row['total']
    return rows


def format_table(rows: Sequence[Dict]) -> str:
    """Fixed-width table of median milliseconds per frame."""
    header = ('config', 'targets', 'variant', 'crop', 'upload', 'forward', 'post', 'total',
              'speedup')
    lines = ['{:<13} {:>7} {:<26} {:>8} {:>8} {:>9} {:>7} {:>9} {:>8}'.format(*header)]
    for row in rows:
        lines.append('{:<13} {:>7} {:<26} {:>8.2f} {:>8.2f} {:>9.1f} {:>7.2f} {:>9.1f} {:>7.2f}x'
                     .format(row['config'], row['targets'], row['variant'], row['crop'],
                             row['upload'], row['forward'], row['post'], row['total'],
                             row['speedup']))
    return '\n'.join(lines)


def main(argv: Sequence[str] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--configs', default='tiny,simtrack-b16',
                        help='comma-separated model configs (default: tiny,simtrack-b16)')
    parser.add_argument('--targets', default='1,8', help='comma-separated target counts')
    parser.add_argument('--frames', type=int, default=0,
                        help='measured frames per group (default: per config)')
    parser.add_argument('--quick', action='store_true', help='fewer frames')
    parser.add_argument('--no-cuda', action='store_true', help='CPU variants only')
    parser.add_argument('--crops-only', action='store_true',
                        help='only the crop comparison (no model)')
    parser.add_argument('--json', help='write the rows and machine info to this file')
    args = parser.parse_args(argv)
    cuda = torch.cuda.is_available() and not args.no_cuda
    target_counts = [int(t) for t in args.targets.split(',')]
    print(machine_header(), flush=True)
    crops = crop_rows(target_counts, args.quick, cuda)
    print(format_crop_table(crops), flush=True)
    rows = []
    if not args.crops_only:
        for config in args.configs.split(','):
            for targets in target_counts:
                rows.extend(run_group(config, targets, args.quick, args.frames, cuda))
                print(f'done: {config}, {targets} target(s)', file=sys.stderr, flush=True)
        print(f'\nframe {FRAME_WIDTH}x{FRAME_HEIGHT}; median ms per frame; speedup = baseline '
              'total / variant total')
        print(format_table(rows))
    if args.json:
        with open(args.json, 'w', encoding='utf-8') as handle:
            json.dump({'machine': machine_info(), 'crops': crops, 'rows': rows}, handle,
                      indent=2)
    return 0


if __name__ == '__main__':
    sys.exit(main())
