"""``simtrack-export``: a checkpoint to ONNX (search + template graphs), int8, TorchScript.

Examples::

    simtrack-export simtrack_ros/weights/demo_small.pth         # fp32, into the export cache
    simtrack-export model.pth --precision int8-static --calibration-data data/synth/val
    simtrack-export sim-vit-b-16.pth --out b16.onnx --torchscript b16.pt --check

Without ``--out`` the files go to the export cache beside the checkpoint (what the tracker
node uses, so it starts without exporting); with it, to ``PATH.onnx`` and
``PATH.template.onnx``.
"""
from __future__ import annotations

import argparse
from pathlib import Path
import sys
import tempfile
from typing import Dict, List, Optional

import numpy as np
import torch

from simtrack_ros.data.sequences import list_sequences
from simtrack_ros.export.cache import cached_export, file_sha256, quantized
from simtrack_ros.export.metadata import PRECISIONS
from simtrack_ros.export.onnx_export import (
    DEFAULT_OPSET, example_inputs, export_onnx, ExportedModel, onnxruntime_session,
    SEARCH_OUTPUTS)
from simtrack_ros.export.torchscript import export_torchscript
from simtrack_ros.model.checkpoint import load_checkpoint
from simtrack_ros.model.config import CONFIG_NAMES, get_config
from simtrack_ros.model.simtrack import SimTrack

PROG = 'simtrack-export'
#: Targets of the --check inputs (more than one: the dynamic dimension is exercised).
CHECK_TARGETS = 2


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG, description=__doc__.split('\n\n')[0],
        epilog=__doc__.split('\n\n', 1)[1], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('checkpoint', type=Path,
                        help='checkpoint: ours, official SimTrack or CLIP (model/checkpoint.py)')
    parser.add_argument('--out', type=Path, metavar='PATH.onnx',
                        help='search graph to write (template graph beside it as '
                        'PATH.template.onnx); default: the export cache beside the checkpoint')
    parser.add_argument('--precision', choices=PRECISIONS, default='fp32',
                        help='fp32; int8-dynamic (ONNX Runtime, MatMul layers); int8-static '
                        '(NNCF, calibrated; runs as int8 in OpenVINO) (default %(default)s)')
    parser.add_argument('--calibration-data', type=Path, metavar='DIR',
                        help='int8-static: sequences in the GOT-10k layout to calibrate on '
                        '(default: generated synthetic sequences)')
    parser.add_argument('--torchscript', type=Path, metavar='PATH.pt',
                        help='also write the traced search forward as TorchScript')
    parser.add_argument('--opset', type=int, default=DEFAULT_OPSET,
                        help='ONNX opset, %(default)s or newer (default %(default)s)')
    parser.add_argument('--config', choices=CONFIG_NAMES,
                        help='model configuration (default: the one stored in a simtrack_ros '
                        'checkpoint, else simtrack-b16)')
    parser.add_argument('--check', action='store_true',
                        help='run the export with ONNX Runtime on random inputs and print the '
                        'largest |difference| from PyTorch')
    return parser


def _export(args: argparse.Namespace, model: SimTrack) -> ExportedModel:
    """Export as asked: into ``--out`` or the cache."""
    sequences = list_sequences(args.calibration_data) if args.calibration_data else None
    if args.out is None:
        return cached_export(args.checkpoint, args.precision, model, sequences,
                             opset=args.opset)
    sha256 = file_sha256(args.checkpoint)
    if args.precision == 'fp32':
        return export_onnx(model, args.out, sha256, args.opset)
    with tempfile.TemporaryDirectory(prefix='simtrack-export-') as work:
        fp32 = export_onnx(model, Path(work) / 'model.onnx', sha256, args.opset)
        return quantized(fp32, args.out, args.precision, sequences,
                         Path(work) / 'calibration')


def _describe(path: Path) -> List[str]:
    """Lines naming a graph file, its size and its inputs/outputs with their shapes."""
    session = onnxruntime_session(path)
    lines = [f'{path} ({path.stat().st_size / 1e6:.1f} MB)']
    for kind, values in (('input', session.get_inputs()), ('output', session.get_outputs())):
        lines += [f'  {kind:6s} {value.name:16s} {value.shape}' for value in values]
    return lines


def _check(model: SimTrack, exported: ExportedModel) -> Dict[str, float]:
    """Largest |ONNX Runtime - PyTorch| per output on seeded random inputs."""
    config = model.config
    template_in = example_inputs(config, 'template', CHECK_TARGETS, seed=1)
    search = example_inputs(config, 'search', CHECK_TARGETS, seed=2)['search']
    with torch.no_grad():
        tokens = model.eval().encode_template(*template_in.values())
        reference = model.forward_search(tokens, search)
    onnx_tokens = onnxruntime_session(exported.template).run(
        None, {k: v.numpy() for k, v in template_in.items()})[0]
    outputs = onnxruntime_session(exported.search).run(
        None, {'template_tokens': tokens.numpy(), 'search': search.numpy()})
    diffs = {'template_tokens': float(np.abs(onnx_tokens - tokens.numpy()).max())}
    for name, value in zip(SEARCH_OUTPUTS, outputs):
        diffs[name] = float(np.abs(value - reference[name].numpy()).max())
    return diffs


def _one_line(error: BaseException) -> str:
    return '; '.join(line.strip() for line in str(error).splitlines() if line.strip())


def main(argv: Optional[List[str]] = None) -> int:
    """Entry point of ``simtrack-export``; returns the exit status."""
    args = _parser().parse_args(argv)
    if args.calibration_data is not None and args.precision != 'int8-static':
        print(f'{PROG}: error: --calibration-data is used with --precision int8-static only',
              file=sys.stderr)
        return 2
    try:
        config = get_config(args.config) if args.config else None
        model, report = load_checkpoint(args.checkpoint, config)
        print(f'checkpoint: {args.checkpoint} ({model.config.name}; heads: '
              f'{", ".join(sorted(model.trained_heads)) or "none trained"}); {report.summary()}')
        exported = _export(args, model)
        torchscript = (export_torchscript(model, args.torchscript, file_sha256(args.checkpoint))
                       if args.torchscript else None)
    except (OSError, ValueError) as error:  # CheckpointError, ExportError, bad sequences
        print(f'{PROG}: error: {_one_line(error)}', file=sys.stderr)
        return 2
    print(f'exported {exported.precision} (opset {exported.metadata.opset}):')
    for path in (exported.search, exported.template):
        print('\n'.join(_describe(path)))
    if torchscript is not None:
        print(f'{torchscript} ({torchscript.stat().st_size / 1e6:.1f} MB, TorchScript search '
              'forward)')
    if args.check:
        diffs = _check(model, exported)
        print(f'check ({CHECK_TARGETS} targets, random inputs, {exported.precision} vs PyTorch '
              'fp32): max |diff| ' + ', '.join(f'{k} {v:.2e}' for k, v in diffs.items()))
    return 0


if __name__ == '__main__':
    sys.exit(main())
