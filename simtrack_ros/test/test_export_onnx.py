"""ONNX export: outputs equal PyTorch's, metadata, and clear errors for bad or mismatched files."""
from __future__ import annotations

import json
import logging
from pathlib import Path
import shutil
from typing import Dict, Tuple

import numpy as np
import onnx
import pytest
import torch

from simtrack_ros.export.cache import file_sha256
from simtrack_ros.export.metadata import (
    ExportError, ExportMetadata, FORMAT_VERSION, METADATA_KEY, read_metadata, write_metadata)
from simtrack_ros.export.onnx_export import (
    example_inputs, export_metadata, export_onnx, ExportedModel, load_exported, run_onnx,
    SEARCH_OUTPUTS, template_path)
from simtrack_ros.export.torchscript import export_torchscript, load_torchscript
from simtrack_ros.model import build_model, get_config, save_checkpoint, SimTrack
from simtrack_ros.model.challenge_calibration import ChallengeCalibration
from simtrack_ros.tracking.challenge_cues import CUE_NAMES

#: ONNX Runtime fp32 vs PyTorch eager: measured 1e-7 (search outputs), 3e-6 (template tokens).
ATOL, RTOL = 1e-5, 1e-4


def small_checkpoint(folder: Path, seed: int = 0) -> Tuple[SimTrack, Path]:
    """Build a seeded 'small' model (both heads marked trained) and save it as a checkpoint."""
    torch.manual_seed(seed)
    model = build_model('small').eval()
    model.trained_heads = {'box', 'cls'}
    return model, save_checkpoint(model, folder / f'small_{seed}.pth')


def torch_outputs(model: SimTrack, targets: int, seed: int
                  ) -> Tuple[Dict[str, torch.Tensor], Dict[str, torch.Tensor], torch.Tensor]:
    """(template inputs, search outputs incl. the tokens' search input, tokens) of PyTorch."""
    template_in = example_inputs(model.config, 'template', targets, seed=seed)
    search = example_inputs(model.config, 'search', targets, seed=seed + 1)['search']
    with torch.no_grad():
        tokens = model.encode_template(*template_in.values())
        out = model.forward_search(tokens, search)
    out['search'] = search
    return template_in, out, tokens


def assert_matches_torch(model: SimTrack, exported: ExportedModel, targets: int) -> None:
    """Template and search graph outputs (ONNX Runtime) equal PyTorch's within ATOL/RTOL."""
    template_in, out, tokens = torch_outputs(model, targets, seed=targets)
    onnx_tokens = run_onnx(exported.template, {k: v.numpy() for k, v in template_in.items()})[0]
    np.testing.assert_allclose(onnx_tokens, tokens.numpy(), rtol=RTOL, atol=ATOL)
    outputs = run_onnx(exported.search, {'template_tokens': tokens.numpy(),
                                         'search': out['search'].numpy()})
    for name, value in zip(SEARCH_OUTPUTS, outputs):
        assert value.shape == tuple(out[name].shape), name
        np.testing.assert_allclose(value, out[name].numpy(), rtol=RTOL, atol=ATOL, err_msg=name)


@pytest.fixture(scope='module')
def small(tmp_path_factory) -> Tuple[SimTrack, Path, ExportedModel]:
    folder = tmp_path_factory.mktemp('small')
    model, checkpoint = small_checkpoint(folder)
    return model, checkpoint, export_onnx(model, folder / 'small.onnx', file_sha256(checkpoint))


@pytest.mark.parametrize('targets', [1, 3])
def test_onnx_outputs_equal_pytorch(small, targets):
    model, _, exported = small
    assert_matches_torch(model, exported, targets)


def test_metadata_describes_the_model_and_checkpoint(small):
    model, checkpoint, exported = small
    assert exported.template == exported.search.with_name('small.template.onnx')
    assert exported.guard_file('fp32') == exported.search.with_name('small.guard.json')
    assert exported.guard_file('bf16') == exported.search.with_name('small.bf16.guard.json')
    loaded = load_exported(exported.search)
    assert loaded == exported
    meta = read_metadata(exported.search)
    assert (meta.graph, meta.precision, meta.opset) == ('search', 'fp32', 18)
    assert meta.checkpoint_sha256 == file_sha256(checkpoint)
    assert meta.model_config() == model.config
    assert loaded.config == model.config and loaded.class_names == model.class_names
    assert loaded.trained_heads == {'box', 'cls'} and loaded.cls_head_trained
    assert loaded.multi_label is False and meta.torch_version == torch.__version__
    assert read_metadata(exported.template).graph == 'template'
    assert ExportMetadata.from_json(meta.to_json(), 'x') == meta


def test_challenge_calibration_travels_in_the_metadata(small, tmp_path):
    model, _, exported = small
    rng = np.random.default_rng(0)
    classes, inputs = len(model.class_names), len(model.class_names) + len(CUE_NAMES)
    calibration = ChallengeCalibration(model.class_names, CUE_NAMES, np.zeros(inputs),
                                       np.ones(inputs), rng.normal(size=(classes, inputs)),
                                       np.zeros(classes))
    model.challenge_calibration = calibration
    try:
        stored = export_metadata(model, 'search').challenge_calibration
    finally:
        model.challenge_calibration = None
    assert ChallengeCalibration.from_dict(stored).weight.tolist() == calibration.weight.tolist()
    search = _copy(exported, tmp_path / 'calibrated')
    _edit_metadata(search, challenge_calibration=stored)
    loaded = load_exported(search)
    np.testing.assert_array_equal(loaded.challenge_calibration.weight, calibration.weight)
    assert exported.challenge_calibration is None      # files without one (older ones too)
    old = json.loads(read_metadata(exported.search).to_json())
    del old['challenge_calibration']
    assert ExportMetadata.from_json(json.dumps(old), 'old').challenge_calibration is None
    _edit_metadata(search, challenge_calibration={**stored, 'bias': [0.0]})
    with pytest.raises(ExportError, match='malformed metadata.*bias must have shape'):
        load_exported(search)


def _copy(exported: ExportedModel, folder: Path) -> Path:
    folder.mkdir()
    search = folder / exported.search.name
    shutil.copyfile(exported.search, search)
    shutil.copyfile(exported.template, template_path(search))
    return search


def _edit_metadata(path: Path, **changes) -> None:
    write_metadata(path, read_metadata(path).replace(**changes))


def test_missing_and_truncated_files_are_clear_errors(small, tmp_path):
    search = _copy(small[2], tmp_path / 'copy')
    with pytest.raises(ExportError, match='no such file'):
        load_exported(tmp_path / 'absent.onnx')
    with pytest.raises(ExportError, match='must end in .onnx'):
        load_exported(search.with_suffix('.pth'))
    data = search.read_bytes()
    search.write_bytes(data[:len(data) // 2])
    with pytest.raises(ExportError, match=r'copy/small.onnx: not a readable ONNX file'):
        load_exported(search)
    search.write_bytes(data)
    template_path(search).unlink()
    with pytest.raises(ExportError, match='template graph .*small.template.onnx is missing'):
        load_exported(search)


def test_stripped_or_bad_metadata_is_a_clear_error(small, tmp_path):
    search = _copy(small[2], tmp_path / 'copy')
    proto = onnx.load(str(search))
    del proto.metadata_props[:]
    onnx.save(proto, str(search))
    with pytest.raises(ExportError, match=f'small.onnx: no {METADATA_KEY} metadata'):
        load_exported(search)
    with pytest.raises(ExportError, match='not JSON'):
        ExportMetadata.from_json('{broken', 'file.onnx')
    newer = json.loads(read_metadata(small[2].search).to_json())
    newer['format_version'] = FORMAT_VERSION + 1
    with pytest.raises(ExportError, match='format_version 2 is not supported'):
        ExportMetadata.from_json(json.dumps(newer), 'file.onnx')
    with pytest.raises(ExportError, match='it is a template graph; pass the search graph'):
        load_exported(small[2].template)


def test_mismatched_template_or_shapes_are_clear_errors(small, tmp_path):
    search = _copy(small[2], tmp_path / 'copy')
    _edit_metadata(template_path(search), checkpoint_sha256='0' * 64)
    with pytest.raises(ExportError, match='does not belong to it .checkpoint_sha256'):
        load_exported(search)
    tiny = get_config('tiny').to_dict()
    for path in (search, template_path(search)):
        _edit_metadata(path, config=tiny, checkpoint_sha256='')
    with pytest.raises(ExportError, match=r'template_tokens has shape \(None, 20, 192\) but '
                                          r"its config 'tiny' gives \(None, 65, 192\)"):
        load_exported(search)


def test_torchscript_export_runs_any_target_count_with_metadata(small, tmp_path):
    model, _, _ = small
    path = export_torchscript(model, tmp_path / 'small.pt', 'abc')
    module, meta = load_torchscript(path)
    assert (meta.graph, meta.checkpoint_sha256) == ('search', 'abc')
    assert meta.model_config() == model.config
    for targets in (1, 3):
        _, out, tokens = torch_outputs(model, targets, seed=5)
        with torch.no_grad():
            traced = module(tokens, out['search'])
        for name, value in zip(SEARCH_OUTPUTS, traced):
            torch.testing.assert_close(value, out[name], rtol=RTOL, atol=ATOL)
    path.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(ExportError, match='small.pt: cannot load it'):
        load_torchscript(path)


# Slow (the suite's one B/16 export: about a minute on 2 busy cores, 340 MB written).
def test_b16_export_matches_pytorch_and_its_template_fits_no_other_config(small, tmp_path):
    torch.manual_seed(0)
    model = build_model('simtrack-b16').eval()
    exported = export_onnx(model, tmp_path / 'b16' / 'b16.onnx')
    assert load_exported(exported.search).config.name == 'simtrack-b16'
    assert_matches_torch(model, exported, targets=1)
    search = _copy(small[2], tmp_path / 'swapped')
    shutil.copyfile(exported.template, template_path(search))
    with pytest.raises(ExportError, match="does not belong to it .config 'simtrack-b16'"):
        load_exported(search)


def test_export_says_nothing_about_torchvision(tmp_path, caplog):
    """The exporter's per-op warnings about an absent torchvision are not ours to print."""
    model, _ = small_checkpoint(tmp_path, seed=1)
    with caplog.at_level(logging.WARNING):
        export_onnx(model, tmp_path / 'quiet.onnx')
    assert 'torchvision' not in caplog.text
    assert logging.getLogger('torch.onnx._internal.exporter._registration').level == (
        logging.NOTSET)                                             # restored
