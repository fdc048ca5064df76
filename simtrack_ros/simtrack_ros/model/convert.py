"""Convert between official SimTrack checkpoints and the simtrack_ros format.

Examples::

    python -m simtrack_ros.model.convert official-to-ours sim-vit-b-16.pth simtrack_b16.pt
    python -m simtrack_ros.model.convert ours-to-official simtrack_b16.pt sim-vit-b-16.pth
    convert_checkpoint weights-only runs/finetune/best.pth model.pth   # drop the training state
"""
from __future__ import annotations

import argparse
import sys
from typing import List, Optional

from simtrack_ros.model.checkpoint import (
    CheckpointError, load_checkpoint, save_checkpoint, save_official_state_dict)
from simtrack_ros.model.config import CONFIG_NAMES, get_config
from simtrack_ros.model.simtrack import SimTrack


def build_parser() -> argparse.ArgumentParser:
    """Build the command-line parser."""
    parser = argparse.ArgumentParser(
        prog='convert_checkpoint',
        description='Convert SimTrack checkpoints. Files are read with weights_only loading; '
                    'other pickled objects become inert placeholders (no code runs). OpenAI '
                    'CLIP TorchScript archives are read with torch.jit.load: trusted files only.')
    parser.add_argument(
        'direction', choices=('official-to-ours', 'ours-to-official', 'weights-only'),
        help='official-to-ours: official SimTrack (or CLIP) weights -> simtrack_ros checkpoint; '
             'ours-to-official: simtrack_ros checkpoint -> flat official state dict (box part); '
             'weights-only: a simtrack_ros (training) checkpoint -> the same model without its '
             'training state (optimizer, RNG, ...), metadata kept: a file to ship')
    parser.add_argument('input', help='checkpoint to read')
    parser.add_argument('output', help='file to write (written atomically)')
    parser.add_argument(
        '--config', choices=CONFIG_NAMES, default=None,
        help='model configuration (default: the one stored in a simtrack_ros checkpoint, '
             'else simtrack-b16)')
    parser.add_argument(
        '--class-names', default=None,
        help='comma-separated class order of classification weights in an official-layout '
             'file (guide-style checkpoints); without it such weights are skipped')
    return parser


def official_export_warnings(model: SimTrack) -> List[str]:
    """Return what the official (box-only) layout loses or carries untrained for ``model``."""
    warnings = []
    if 'box' not in model.trained_heads:
        warnings.append('the box head has no trained weights (e.g. CLIP-only input): the '
                        'written file tracks nothing until trained')
    fusion = model.fusion_layer
    if fusion is not None and (fusion.weight.any() or fusion.bias.any()):
        warnings.append('the trained fusion_layer is dropped (the official layout has no '
                        "class stream): the written file's boxes differ from this model's")
    return warnings


def main(argv: Optional[List[str]] = None) -> int:
    """Run the converter; returns the exit status (2 for a bad input or output)."""
    args = build_parser().parse_args(argv)
    config = get_config(args.config) if args.config else None
    class_names = args.class_names.split(',') if args.class_names else None
    try:
        model, report = load_checkpoint(args.input, config, class_names=class_names)
        print(report.summary())
        if args.direction != 'ours-to-official':
            metadata = {**report.metadata, 'converted_from': str(args.input)}
            path = save_checkpoint(model, args.output, metadata=metadata)
        else:
            for warning in official_export_warnings(model):
                print(f'warning: {warning}', file=sys.stderr)
            path = save_official_state_dict(model, args.output)
    except (CheckpointError, ValueError, OSError) as exc:
        print(f'convert_checkpoint: error: {exc}', file=sys.stderr)
        return 2
    print(f'wrote {path} (config {model.config.name}, trained heads: '
          f'{", ".join(sorted(model.trained_heads)) or "none"})')
    return 0


if __name__ == '__main__':
    sys.exit(main())
