"""Exported files cached per checkpoint, keyed by its SHA-256, so a restart does not re-export.

Layout: ``<checkpoint folder>/<checkpoint stem>.export/<sha256[:16]>/model.<precision>.onnx``
(with ``.template.onnx`` beside each) when the checkpoint's folder is writable, else the same
under ``${XDG_CACHE_HOME:-~/.cache}/simtrack_ros/exports/<sha256[:16]>/`` (e.g. for weights in
a read-only install). A cached file is reused when :func:`~.onnx_export.load_exported` accepts
it and its metadata names the same checkpoint hash, opset and (given a model) config, and for
int8 the same quantisation recipe (:func:`~.quantize.recipe`) and, when calibration sequences
are given, the same folders (by path; without them any calibration is taken); anything else is
exported again, atomically. int8 files are made from the cached fp32 export.
"""
from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Callable, Optional, Sequence

from simtrack_ros.export.metadata import ExportError, PathLike, PRECISIONS
from simtrack_ros.export.onnx_export import (
    DEFAULT_OPSET, export_onnx, ExportedModel, load_exported)
from simtrack_ros.export.quantize import quantize_dynamic, quantize_static, recipe
from simtrack_ros.model.checkpoint import load_checkpoint
from simtrack_ros.model.load_report import CheckpointError
from simtrack_ros.model.simtrack import SimTrack

CACHE_SUBFOLDER = Path('simtrack_ros') / 'exports'
CALIBRATION_FOLDER = 'calibration'
_CHUNK = 1 << 20


def file_sha256(path: PathLike) -> str:
    """Return the hex SHA-256 of a file; CheckpointError if it cannot be read."""
    digest = hashlib.sha256()
    try:
        with open(path, 'rb') as stream:
            for chunk in iter(lambda: stream.read(_CHUNK), b''):
                digest.update(chunk)
    except OSError as exc:
        raise CheckpointError(f'checkpoint {path}: cannot read it ({exc.strerror})') from None
    return digest.hexdigest()


def _user_cache() -> Path:
    base = os.environ.get('XDG_CACHE_HOME') or str(Path.home() / '.cache')
    return Path(base) / CACHE_SUBFOLDER


def export_folder(checkpoint: PathLike, sha256: str) -> Path:
    """Return (and create) the cache folder of a checkpoint with hash ``sha256``.

    ``<checkpoint folder>/<stem>.export/<sha256[:16]>/`` when it can be written there, else
    ``${XDG_CACHE_HOME:-~/.cache}/simtrack_ros/exports/<sha256[:16]>/``.
    """
    checkpoint = Path(checkpoint)
    key = sha256[:16]
    beside = checkpoint.parent / f'{checkpoint.stem}.export' / key
    try:
        beside.mkdir(parents=True, exist_ok=True)
        if os.access(beside, os.W_OK | os.X_OK):
            return beside
    except OSError:
        pass  # a read-only install: use the user's cache
    folder = _user_cache() / key
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def calibration_source(sequences: Optional[Sequence[Path]]) -> str:
    """Name the calibration data of an int8-static file: synthetic, or a digest of the folders."""
    if sequences is None:
        return 'synthetic sequences'
    digest = hashlib.sha256('\n'.join(sorted(str(Path(p).resolve()) for p in sequences))
                            .encode()).hexdigest()
    return f'{len(sequences)} sequences (sha256 of their paths {digest[:16]})'


def expected_quantization(precision: str, sequences: Optional[Sequence[Path]]) -> Optional[str]:
    """Return the ``quantization`` metadata a file of ``precision`` made here would carry."""
    if precision == 'fp32':
        return None
    return recipe(precision, calibration_source(sequences) if precision == 'int8-static'
                  else None)


def _same_quantization(found: Optional[str], precision: str,
                       sequences: Optional[Sequence[Path]]) -> bool:
    """Whether a cached file's ``quantization`` is what this request asks for.

    Without ``sequences`` (the tracker, or an export that names no calibration data) an
    int8-static file of the current recipe is taken whatever it was calibrated on, e.g. the
    ``--calibration-data`` export made ahead of a deployment.
    """
    if precision == 'int8-static' and sequences is None and found is not None:
        return found.startswith(recipe(precision, ''))
    return found == expected_quantization(precision, sequences)


def _reusable(path: Path, sha256: str, opset: int, model: Optional[SimTrack], precision: str,
              sequences: Optional[Sequence[Path]], progress: Callable[[str], None]
              ) -> Optional[ExportedModel]:
    """Return the cached export at ``path`` if whole and made from the same source, else None."""
    if not path.is_file():
        return None
    try:
        exported = load_exported(path)
    except ExportError as exc:
        progress(f'cached export unusable, exporting again: {exc}')
        return None
    metadata = exported.metadata
    if (metadata.checkpoint_sha256 != sha256 or metadata.opset != opset
            or (model is not None and metadata.config != model.config.to_dict())):
        return None
    if not _same_quantization(metadata.quantization, precision, sequences):
        progress(f'cached {path.name} was quantised another way '
                 f'({metadata.quantization or "not recorded"}), making it again: '
                 f'{expected_quantization(precision, sequences)}')
        return None
    return exported


def quantized(fp32: ExportedModel, path: PathLike, precision: str,
              calibration_sequences: Optional[Sequence[Path]], calibration_folder: Path,
              progress: Callable[[str], None] = print) -> ExportedModel:
    """Quantise an fp32 export to ``path`` ('int8-dynamic' or 'int8-static').

    'int8-static' is calibrated on ``calibration_sequences``, or on synthetic sequences
    rendered once into ``calibration_folder`` when None.
    """
    if precision == 'int8-dynamic':
        progress(f'quantising {fp32.search} to {path} (ONNX Runtime dynamic int8)')
        return quantize_dynamic(fp32, path)
    if precision != 'int8-static':
        raise ValueError(f'precision must be int8-dynamic or int8-static, got {precision!r}')
    # Imported here: calibration uses the tracking package, whose engines import this module.
    from simtrack_ros.export.calibration import (
        calibration_inputs, synthetic_calibration_sequences)

    source = calibration_source(calibration_sequences)
    if calibration_sequences is None:
        progress(f'rendering synthetic calibration sequences in {calibration_folder}')
        calibration_sequences = synthetic_calibration_sequences(calibration_folder)
    inputs = calibration_inputs(fp32, calibration_sequences)
    progress(f'quantising {fp32.search} to {path} (NNCF static int8, {len(inputs)} calibration '
             f'crops from {len(calibration_sequences)} sequences; a B/16 takes 1-2 min)')
    return quantize_static(fp32, path, inputs, source)


def _cached(checkpoint: Path, sha256: str, folder: Path, precision: str,
            model: Optional[SimTrack], calibration_sequences: Optional[Sequence[Path]],
            progress: Callable[[str], None], opset: int) -> ExportedModel:
    path = folder / f'model.{precision}.onnx'
    found = _reusable(path, sha256, opset, model, precision, calibration_sequences, progress)
    if found is not None:
        return found
    if precision == 'fp32':
        if model is None:
            progress(f'loading {checkpoint}')
            model, _ = load_checkpoint(checkpoint)
        progress(f'exporting {checkpoint} to {path} (ONNX opset {opset}; a B/16 takes about '
                 '10-20 s)')
        exported = export_onnx(model, path, sha256, opset)
    else:
        fp32 = _cached(checkpoint, sha256, folder, 'fp32', model, None, progress, opset)
        exported = quantized(fp32, path, precision, calibration_sequences,
                             folder / CALIBRATION_FOLDER, progress)
    progress(f'wrote {exported.search} ({exported.search.stat().st_size / 1e6:.1f} MB) and '
             f'{exported.template.name}')
    return exported


def cached_export(checkpoint: PathLike, precision: str = 'fp32',
                  model: Optional[SimTrack] = None,
                  calibration_sequences: Optional[Sequence[Path]] = None,
                  progress: Callable[[str], None] = print,
                  opset: int = DEFAULT_OPSET) -> ExportedModel:
    """Return the cached export of ``checkpoint`` in ``precision``, exporting it if needed.

    ``model``: the checkpoint already loaded (else it is loaded when an export is needed; a
    cached file made from another config of the same checkpoint is replaced).
    ``calibration_sequences``: sequence folders for 'int8-static' (default: synthetic ones
    rendered once into the cache folder). ``progress`` gets one line per step taken.
    """
    if precision not in PRECISIONS:
        raise ValueError(f'precision must be one of {", ".join(PRECISIONS)}, got {precision!r}')
    checkpoint = Path(checkpoint)
    if not checkpoint.is_file():
        raise CheckpointError(f'checkpoint {checkpoint}: no such file')
    sha256 = file_sha256(checkpoint)
    folder = export_folder(checkpoint, sha256)
    return _cached(checkpoint, sha256, folder, precision, model, calibration_sequences,
                   progress, opset)
