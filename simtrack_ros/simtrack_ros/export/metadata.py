"""What an exported file carries about its model: :class:`ExportMetadata` in the ONNX file.

The metadata is JSON in the ONNX ``metadata_props`` entry :data:`METADATA_KEY`: the model
config, class names, single/multi-label, trained heads, what the file holds (graph and
precision), the SHA-256 of the source checkpoint, the opset and the torch version that exported
it, the challenge calibration when the checkpoint has one, and for an int8 file how it was
quantised (``quantization``: the recipe and its calibration data). With it, an ``.onnx`` file is
all a tracker needs. Problems are :class:`ExportError`,
naming the file, what is wrong and what to do.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
import json
import os
from pathlib import Path
from typing import Any, Dict, Optional, Tuple, Union
import uuid

import onnx

from simtrack_ros.model.challenge_calibration import ChallengeCalibration
from simtrack_ros.model.config import SimTrackConfig

FORMAT_VERSION = 1
METADATA_KEY = 'simtrack_ros'
#: What a file holds: full precision, ONNX Runtime dynamic int8, NNCF static int8 (QDQ).
PRECISIONS = ('fp32', 'int8-dynamic', 'int8-static')
#: The two graphs of an export: the per-frame forward and the template encoder.
GRAPHS = ('search', 'template')
PathLike = Union[str, 'os.PathLike[str]']

_REEXPORT = 're-export it with simtrack-export'
#: Metadata keys that files written before they existed lack.
_OPTIONAL = {'challenge_calibration', 'quantization'}


class ExportError(ValueError):
    """An exported file that cannot be used; the message names the file and what to do."""


@dataclass(frozen=True)
class ExportMetadata:
    """Metadata of one exported graph (stored as JSON in the file)."""

    graph: str
    config: Dict[str, Any]
    class_names: Tuple[str, ...]
    multi_label: bool
    trained_heads: Tuple[str, ...]
    precision: str
    checkpoint_sha256: str
    opset: int
    torch_version: str
    format_version: int = FORMAT_VERSION
    challenge_calibration: Optional[Dict[str, Any]] = None
    #: int8 files: the quantisation recipe and calibration data (:mod:`.quantize`); fp32: None.
    quantization: Optional[str] = None

    def to_json(self) -> str:
        """Return the JSON text stored in the file (keys sorted)."""
        data = dataclasses.asdict(self)
        data['class_names'] = list(self.class_names)
        data['trained_heads'] = list(self.trained_heads)
        return json.dumps(data, sort_keys=True)

    @classmethod
    def from_json(cls, text: str, source: str) -> 'ExportMetadata':
        """Parse :meth:`to_json`'s text; ExportError naming ``source`` if it is not valid."""
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise ExportError(f'{source}: its {METADATA_KEY} metadata is not JSON ({exc}); '
                              f'{_REEXPORT}') from None
        if not isinstance(data, dict):
            raise ExportError(f'{source}: its {METADATA_KEY} metadata is not a JSON object; '
                              f'{_REEXPORT}')
        version = data.get('format_version')
        if not isinstance(version, int) or version > FORMAT_VERSION:
            raise ExportError(f'{source}: metadata format_version {version!r} is not supported '
                              f'(this code reads up to {FORMAT_VERSION}); update simtrack_ros '
                              f'or {_REEXPORT}')
        names = {f.name for f in dataclasses.fields(cls)}
        missing = sorted(names - set(data) - _OPTIONAL)
        unknown = sorted(set(data) - names)
        if missing or unknown:
            raise ExportError(f'{source}: metadata keys missing {missing}, unknown {unknown}; '
                              f'{_REEXPORT}')
        try:
            metadata = cls(**{**data, 'class_names': tuple(data['class_names']),
                              'trained_heads': tuple(data['trained_heads'])})
            metadata.model_config()
            metadata.calibration()
        except (TypeError, ValueError) as exc:
            raise ExportError(f'{source}: malformed metadata ({exc}); {_REEXPORT}') from None
        if not isinstance(metadata.quantization, (str, type(None))):
            raise ExportError(f'{source}: metadata quantization {metadata.quantization!r} is not '
                              f'text; {_REEXPORT}')
        if metadata.graph not in GRAPHS or metadata.precision not in PRECISIONS:
            raise ExportError(f'{source}: metadata graph {metadata.graph!r} / precision '
                              f'{metadata.precision!r} unknown (expected one of {GRAPHS} / '
                              f'{PRECISIONS}); {_REEXPORT}')
        return metadata

    def model_config(self) -> SimTrackConfig:
        """Return the model configuration the graph was exported from."""
        return SimTrackConfig.from_dict(dict(self.config))

    def calibration(self) -> Optional[ChallengeCalibration]:
        """Return the challenge calibration stored with the graph, if any."""
        if self.challenge_calibration is None:
            return None
        return ChallengeCalibration.from_dict(self.challenge_calibration)

    def replace(self, **changes: Any) -> 'ExportMetadata':
        """Return a copy with some fields changed."""
        return dataclasses.replace(self, **changes)


def load_onnx(path: PathLike) -> onnx.ModelProto:
    """Read an ONNX file (weights included); ExportError if it is missing or unreadable."""
    if not Path(path).is_file():
        raise ExportError(f'exported model {path}: no such file; export one with '
                          'simtrack-export CHECKPOINT')
    try:
        return onnx.load(os.fspath(path))
    except Exception as exc:  # protobuf DecodeError and others for truncated/foreign files
        raise ExportError(f'exported model {path}: not a readable ONNX file (truncated or not '
                          f'ONNX?) [{type(exc).__name__}: {str(exc)[:200]}]; '
                          f'{_REEXPORT}') from None


def metadata_of(proto: onnx.ModelProto, source: str) -> ExportMetadata:
    """Return the :class:`ExportMetadata` of a loaded ONNX model; ExportError if none."""
    for prop in proto.metadata_props:
        if prop.key == METADATA_KEY:
            return ExportMetadata.from_json(prop.value, source)
    raise ExportError(f'exported model {source}: no {METADATA_KEY} metadata (not exported by '
                      f'simtrack-export, or stripped); {_REEXPORT}')


def set_metadata(proto: onnx.ModelProto, metadata: ExportMetadata) -> None:
    """Replace the :data:`METADATA_KEY` entry of ``proto`` with ``metadata``."""
    kept = [(p.key, p.value) for p in proto.metadata_props if p.key != METADATA_KEY]
    del proto.metadata_props[:]
    for key, value in kept + [(METADATA_KEY, metadata.to_json())]:
        proto.metadata_props.add(key=key, value=value)


def read_metadata(path: PathLike) -> ExportMetadata:
    """Return an exported ONNX file's metadata; ExportError if missing, unreadable, invalid."""
    return metadata_of(load_onnx(path), str(path))


def temporary_sibling(path: PathLike) -> Path:
    """Return a unique temporary name beside ``path`` (same folder: a rename is atomic)."""
    target = Path(path)
    return target.with_name(f'.{target.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp')


def save_onnx(proto: onnx.ModelProto, path: PathLike) -> Path:
    """Write ``proto`` as one file, atomically (temporary sibling, then rename)."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    temp = temporary_sibling(target)
    try:
        onnx.save(proto, os.fspath(temp))
        os.replace(temp, target)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    return target


def write_metadata(path: PathLike, metadata: ExportMetadata) -> None:
    """Store ``metadata`` in the ONNX file ``path`` (rewritten atomically)."""
    proto = load_onnx(path)
    set_metadata(proto, metadata)
    save_onnx(proto, path)
