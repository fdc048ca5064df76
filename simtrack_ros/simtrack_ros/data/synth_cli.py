"""``simtrack-synth``: write a synthetic maritime tracking dataset with exact challenge labels.

Examples::

    simtrack-synth data/synth --splits train=16,val=2,test=2 --frames 150 --workers 2
    simtrack-synth data/fog --sequences 4 --challenges occlusion,fog=2 --size 1280x720
    simtrack-synth --contact-sheet docs/images/synthetic_contact_sheet.jpg
    simtrack-synth --list-challenges
"""
from __future__ import annotations

import argparse
import os
from pathlib import Path
import sys
import time
from typing import Dict, List, Optional, Tuple

from simtrack_ros.allocator_tuning import tune_allocator_for_images
from simtrack_ros.challenges import CHALLENGE_NAMES
from simtrack_ros.data.synthetic_contact_sheet import write_contact_sheet
from simtrack_ros.data.synthetic_dataset import (
    generate_dataset, parse_splits, sequence_names, SynthOptions)
from simtrack_ros.data.synthetic_plan import parse_mix, VARIANTS


def _size(text: str) -> Tuple[int, int]:
    width, _, height = text.lower().partition('x')
    try:
        return int(width), int(height)
    except ValueError:
        raise argparse.ArgumentTypeError(f'size must be WIDTHxHEIGHT, got {text!r}') from None


def _occupied(root: Path, counts: Dict[str, int]) -> Optional[Path]:
    """Return the first path this run would write that is taken (a file, a non-empty folder)."""
    if root.exists() and not root.is_dir():
        return root
    for split, count in counts.items():
        folder = root / split if split else root
        for path in (folder / name for name in sequence_names(split, count)):
            try:
                if path.exists() and (not path.is_dir() or any(path.iterdir())):
                    return path
            except OSError:                       # unreadable: not ours to write either
                return path
    return None


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog='simtrack-synth', description=__doc__.split('\n\n')[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog='Challenge names: ' + '; '.join(
            f'{name}: {", ".join(variants)}' for name, variants in VARIANTS.items()))
    parser.add_argument('output', nargs='?', help='dataset root to write (must not hold the '
                        'sequences already)')
    count = parser.add_mutually_exclusive_group()
    count.add_argument('--sequences', type=int, default=None,
                       help='number of sequences directly under OUTPUT (default 20)')
    count.add_argument('--splits', default=None,
                       help='split folders and counts, e.g. train=16,val=2,test=2')
    parser.add_argument('--frames', type=int, default=SynthOptions.frames,
                        help='frames per sequence (default %(default)s)')
    parser.add_argument('--size', type=_size, default=(SynthOptions.width, SynthOptions.height),
                        help='frame size WIDTHxHEIGHT (default 640x360)')
    parser.add_argument('--fps', type=float, default=SynthOptions.fps,
                        help='frame rate: time step of waves and motion (default %(default)s)')
    parser.add_argument('--seed', type=int, default=0, help='dataset seed (default 0)')
    parser.add_argument('--challenges', default='all',
                        help='mix of staged challenges: classes or variants with optional '
                        'weights, e.g. occlusion,fog=2 (default all, equal weights per class)')
    parser.add_argument('--max-challenges', type=int, default=SynthOptions.max_challenges,
                        help='at most this many challenges staged per sequence '
                        '(default %(default)s)')
    parser.add_argument('--workers', type=int, default=os.cpu_count() or 1,
                        help='processes rendering sequences in parallel (default: CPU count)')
    parser.add_argument('--format', choices=('jpg', 'png'), default=SynthOptions.image_format,
                        help='frame file format (default %(default)s)')
    parser.add_argument('--quality', type=int, default=SynthOptions.quality,
                        help='JPEG quality (default %(default)s)')
    parser.add_argument('--no-progress', action='store_true', help='no progress output')
    parser.add_argument('--contact-sheet', metavar='IMAGE',
                        help='write a contact sheet (one row per class, box drawn) instead '
                        'of a dataset')
    parser.add_argument('--list-challenges', action='store_true',
                        help='print the classes and their variants and exit')
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    """Entry point of ``simtrack-synth``; returns the exit status."""
    parser = _parser()
    args = parser.parse_args(argv)
    if args.list_challenges:
        for name, variants in VARIANTS.items():
            print(f'{name:24s} {", ".join(variants)}')
        return 0
    if args.contact_sheet:
        path = write_contact_sheet(args.contact_sheet, seed=args.seed)
        print(f'wrote {path} ({path.stat().st_size // 1024} KiB)')
        return 0
    if not args.output:
        parser.error('OUTPUT is required (or --contact-sheet / --list-challenges)')
    try:
        counts = (parse_splits(args.splits) if args.splits
                  else {'': 20 if args.sequences is None else args.sequences})
        options = SynthOptions(width=args.size[0], height=args.size[1], frames=args.frames,
                               fps=args.fps, mix=parse_mix(args.challenges),
                               max_challenges=args.max_challenges, image_format=args.format,
                               quality=args.quality)
    except ValueError as exc:
        parser.error(str(exc))
    empty = [f'{split}={count}' if split else str(count)
             for split, count in counts.items() if count < 1]
    if empty:
        parser.error(f'sequence counts must be >= 1, got {", ".join(empty)}')
    taken = _occupied(Path(args.output), counts)
    if taken is not None:
        what = ('is a file, not a folder' if taken == Path(args.output)
                else f'already holds a dataset ({taken} exists)')
        print(f'simtrack-synth: error: {args.output} {what}; write to another folder, or remove '
              'the old one first', file=sys.stderr)
        return 2
    tune_allocator_for_images()
    started = time.monotonic()
    try:
        results = generate_dataset(args.output, counts, options, seed=args.seed,
                                   workers=max(1, args.workers),
                                   progress=not args.no_progress)
    except (OSError, ValueError) as exc:
        newline = '' if args.no_progress else '\n'  # end a progress bar's line
        print(f'{newline}simtrack-synth: error: {exc}', file=sys.stderr)
        return 1
    seconds = time.monotonic() - started
    frames = len(results) * options.frames
    print(f'wrote {len(results)} sequences, {frames} frames of {args.size[0]}x{args.size[1]} '
          f'to {args.output} in {seconds:.1f} s ({frames / max(seconds, 1e-9):.0f} frames/s)')
    print('frames per class (a frame may show several):')
    for name in CHALLENGE_NAMES:
        total = sum(r.class_frames[name] for r in results)
        print(f'  {name:24s} {total:7d}  {100.0 * total / max(frames, 1):5.1f} %')
    return 0


if __name__ == '__main__':
    sys.exit(main())
