"""Deployment (no ROS): ONNX and TorchScript export, int8 quantisation, the export cache.

Modules: :mod:`.metadata` (what an exported file says about its model), :mod:`.onnx_export`
(the search and template graphs, :class:`~.onnx_export.ExportedModel`), :mod:`.torchscript`,
:mod:`.weights_file` (.onnx or checkpoint: which loader), :mod:`.calibration` (int8
calibration inputs), :mod:`.quantize`, :mod:`.cache` (exports kept
beside the checkpoint, keyed by its hash) and :mod:`.cli` (``simtrack-export``). Import the
modules themselves: this package imports nothing, so the tracker can import the export without
an import cycle.
"""
