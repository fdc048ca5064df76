"""The export cache (keyed by the checkpoint hash, reused after a restart) and simtrack-export."""
from __future__ import annotations

import re
from typing import List

import pytest
from test_export_onnx import small_checkpoint

from simtrack_ros.export.cache import (
    cached_export, expected_quantization, export_folder, file_sha256)
from simtrack_ros.export.calibration import synthetic_calibration_sequences
from simtrack_ros.export.cli import main
from simtrack_ros.export.metadata import read_metadata, write_metadata
from simtrack_ros.export.onnx_export import load_exported
from simtrack_ros.export.quantize import recipe
from simtrack_ros.export.torchscript import load_torchscript
from simtrack_ros.model import save_checkpoint


@pytest.fixture(scope='module')
def cached(tmp_path_factory):
    """Save a checkpoint and export it into the cache: (model, checkpoint, export, progress)."""
    folder = tmp_path_factory.mktemp('cache')
    model, checkpoint = small_checkpoint(folder)
    lines: List[str] = []
    return model, checkpoint, cached_export(checkpoint, progress=lines.append), lines


def test_export_lands_beside_the_checkpoint_keyed_by_its_hash(cached):
    _, checkpoint, exported, lines = cached
    sha256 = file_sha256(checkpoint)
    folder = checkpoint.parent / 'small_0.export' / sha256[:16]
    assert exported.search == folder / 'model.fp32.onnx'
    assert exported.template == folder / 'model.fp32.template.onnx'
    assert exported.metadata.checkpoint_sha256 == sha256
    assert any(line.startswith('exporting') for line in lines), lines


def test_a_restart_reuses_the_cached_files(cached):
    model, checkpoint, exported, _ = cached
    mtimes = [exported.search.stat().st_mtime_ns, exported.template.stat().st_mtime_ns]
    for given in (None, model):
        lines: List[str] = []
        again = cached_export(checkpoint, model=given, progress=lines.append)
        assert again == exported and lines == []
    assert [exported.search.stat().st_mtime_ns,
            exported.template.stat().st_mtime_ns] == mtimes


def test_int8_dynamic_is_made_from_the_cached_fp32_export(cached):
    _, checkpoint, exported, _ = cached
    lines: List[str] = []
    quantized = cached_export(checkpoint, 'int8-dynamic', progress=lines.append)
    assert quantized.search == exported.search.with_name('model.int8-dynamic.onnx')
    assert quantized.precision == 'int8-dynamic'
    assert not any(line.startswith('exporting') for line in lines), lines
    assert any(line.startswith('quantising') for line in lines), lines


def test_an_unreadable_cached_file_is_exported_again(cached):
    model, checkpoint, exported, _ = cached
    data = exported.search.read_bytes()
    exported.search.write_bytes(data[:len(data) // 3])
    lines: List[str] = []
    again = cached_export(checkpoint, model=model, progress=lines.append)
    assert load_exported(again.search) == exported
    assert any('cached export unusable' in line and 'not a readable ONNX' in line
               for line in lines), lines


def test_other_checkpoint_contents_get_another_folder(tmp_path):
    model, checkpoint = small_checkpoint(tmp_path)
    first = file_sha256(checkpoint)
    model.trained_heads = {'box'}
    save_checkpoint(model, checkpoint)
    second = file_sha256(checkpoint)
    assert first != second
    assert export_folder(checkpoint, first) != export_folder(checkpoint, second)


def test_unwritable_checkpoint_folder_falls_back_to_the_user_cache(tmp_path, monkeypatch):
    monkeypatch.setenv('XDG_CACHE_HOME', str(tmp_path / 'xdg'))
    checkpoint = tmp_path / 'weights' / 'model.pth'
    checkpoint.parent.mkdir()
    assert export_folder(checkpoint, 'ab' * 32) == tmp_path / 'weights' / 'model.export' / (
        'ab' * 8)
    (tmp_path / 'weights' / 'other.export').write_text('a file where the folder would go')
    folder = export_folder(tmp_path / 'weights' / 'other.pth', 'cd' * 32)
    assert folder == tmp_path / 'xdg' / 'simtrack_ros' / 'exports' / ('cd' * 8)
    assert folder.is_dir()


def test_cli_help(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(['--help'])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    for option in ('--out', '--precision', 'int8-static', '--calibration-data', '--torchscript',
                   '--opset', '--config', '--check'):
        assert option in text


def test_cli_prints_the_cached_files_and_checks_them(cached, capsys):
    _, checkpoint, exported, _ = cached
    assert main([str(checkpoint), '--check']) == 0
    out = capsys.readouterr().out
    assert f'{exported.search} (' in out and f'{exported.template} (' in out
    assert re.search(r"input +search +\['targets', 3, 128, 128\]", out), out
    assert re.search(r"output +cls_logits +\['targets', 10\]", out), out
    diffs = dict(re.findall(r'(\w+) (\d\.\d+e[-+]\d+)', out.split('max |diff|')[1]))
    assert set(diffs) == {'template_tokens', 'pred_boxes', 'score_map_tl', 'score_map_br',
                          'cls_logits'}
    assert max(float(v) for v in diffs.values()) < 1e-4, diffs


def test_cli_writes_int8_and_torchscript_where_asked(cached, tmp_path, capsys):
    _, checkpoint, _, _ = cached
    out = tmp_path / 'deploy' / 'small.int8.onnx'
    assert main([str(checkpoint), '--out', str(out), '--precision', 'int8-dynamic',
                 '--torchscript', str(tmp_path / 'small.pt')]) == 0
    assert load_exported(out).precision == 'int8-dynamic'
    assert read_metadata(out).checkpoint_sha256 == file_sha256(checkpoint)
    assert load_torchscript(tmp_path / 'small.pt')[1].checkpoint_sha256 == file_sha256(checkpoint)
    assert sorted(p.name for p in out.parent.iterdir()) == ['small.int8.onnx',
                                                            'small.int8.template.onnx']
    assert 'small.pt (' in capsys.readouterr().out


def test_cli_bad_input_is_one_line_and_exit_2(cached, tmp_path, capsys):
    _, checkpoint, _, _ = cached
    junk = tmp_path / 'junk.pth'
    junk.write_bytes(b'not a checkpoint')
    cases = [([str(tmp_path / 'absent.pth')], 'no such file'),
             ([str(junk)], 'not a readable PyTorch file'),
             ([str(checkpoint), '--out', str(tmp_path / 'x.pth')], 'must end in .onnx'),
             ([str(checkpoint), '--calibration-data', str(tmp_path)], 'int8-static only'),
             ([str(checkpoint), '--precision', 'int8-static', '--calibration-data',
               str(tmp_path / 'none')], 'no such dataset folder'),
             ([str(checkpoint), '--out', str(tmp_path / 'x.onnx'), '--opset', '11'],
              'opset 11 is not supported')]
    for argv, message in cases:
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert err.startswith('simtrack-export: error: ') and message in err, (argv, err)
        assert err.count('\n') == 1, err


def test_int8_made_by_another_recipe_is_quantised_again(cached):
    _, checkpoint, _, _ = cached
    first = cached_export(checkpoint, 'int8-dynamic', progress=lambda line: None)
    assert read_metadata(first.search).quantization == recipe('int8-dynamic')
    assert read_metadata(first.template).quantization is None     # the fp32 template graph
    lines: List[str] = []
    assert cached_export(checkpoint, 'int8-dynamic', progress=lines.append) == first
    assert lines == []
    # A file from before the recipe was recorded (or made by an older recipe) is replaced.
    write_metadata(first.search, first.metadata.replace(quantization=None))
    again = cached_export(checkpoint, 'int8-dynamic', progress=lines.append)
    assert again.metadata.quantization == recipe('int8-dynamic')
    assert any('quantised another way (not recorded)' in line for line in lines), lines


def test_static_int8_records_its_calibration_data(tmp_path):
    assert expected_quantization('fp32', None) is None
    synthetic = expected_quantization('int8-static', None)
    assert synthetic == recipe('int8-static', 'synthetic sequences')
    given = expected_quantization('int8-static', [tmp_path / 'b', tmp_path / 'a'])
    assert given.startswith(recipe('int8-static', '2 sequences (sha256 of their paths '))
    assert given == expected_quantization('int8-static', [tmp_path / 'a', tmp_path / 'b'])
    assert given != expected_quantization('int8-static', [tmp_path / 'a'])
    assert expected_quantization('int8-dynamic', [tmp_path / 'a']) == recipe('int8-dynamic')


def test_static_int8_calibrated_on_given_data_is_taken_by_the_tracker(cached, tmp_path):
    """An export calibrated ahead of a deployment is what a later plain request returns."""
    _, checkpoint, _, _ = cached
    sequences = synthetic_calibration_sequences(tmp_path / 'data', count=2, frames=6)
    given = cached_export(checkpoint, 'int8-static', calibration_sequences=sequences,
                          progress=lambda line: None)
    assert '2 sequences (sha256 of their paths' in given.metadata.quantization
    lines: List[str] = []
    assert cached_export(checkpoint, 'int8-static', progress=lines.append) == given
    assert lines == []
    # Other folders named: calibrated again on them.
    again = cached_export(checkpoint, 'int8-static', calibration_sequences=sequences[:1],
                          progress=lines.append)
    assert '1 sequences' in again.metadata.quantization
    assert any('quantised another way' in line for line in lines), lines
