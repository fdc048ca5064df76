"""Which kind of weights file a path names: an exported search graph (.onnx) or a checkpoint."""
from __future__ import annotations

from pathlib import Path
from typing import Optional, TYPE_CHECKING, Union

from simtrack_ros.model.checkpoint import load_checkpoint
from simtrack_ros.model.config import SimTrackConfig
from simtrack_ros.model.simtrack import SimTrack

if TYPE_CHECKING:
    from simtrack_ros.export.onnx_export import ExportedModel

#: Suffix of an exported search graph; any other file is read as a checkpoint.
EXPORTED_SUFFIX = '.onnx'


def is_exported(path: Union[str, Path]) -> bool:
    """Return whether ``path`` names an exported search graph."""
    return Path(path).suffix == EXPORTED_SUFFIX


def load_weights(path: Union[str, Path], config: Optional[SimTrackConfig] = None
                 ) -> Union[SimTrack, 'ExportedModel']:
    """Open a weights file: the exported model of an .onnx file, else the checkpoint's model.

    ``config`` applies to checkpoints only (an exported file carries its own). Raises
    ExportError or CheckpointError (both ValueErrors) with the reason.
    """
    if is_exported(path):
        # Imported here: onnx and onnxruntime are slow to import and only exports need them.
        from simtrack_ros.export.onnx_export import load_exported
        return load_exported(path)
    return load_checkpoint(path, config)[0]
