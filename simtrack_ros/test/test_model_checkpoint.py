"""Checkpoint loading and saving: official layouts, CLIP weights, our format, bad files."""
from __future__ import annotations

import os
from pathlib import Path
import sys
import types
from typing import Dict, List

import numpy as np
import pytest
import torch
from torch import nn

from simtrack_ros.challenges import CHALLENGE_NAMES, DEFAULT_PRIORITY
from simtrack_ros.model import (build_model, CheckpointError, get_config, load_checkpoint,
                                load_clip_weights, load_official_state_dict, save_checkpoint,
                                SimTrack)
from simtrack_ros.model.checkpoint import (_short, official_state_dict, Placeholder,
                                           read_checkpoint)
from simtrack_ros.model.clip_vit import VisionTransformer
from simtrack_ros.model.convert import main as convert_main

TINY = get_config('tiny')
CLASS_PREFIXES = ('cls_projection.', 'classifier.', 'fusion_layer.')


def randomised(config=TINY, seed: int = 0) -> SimTrack:
    """Build a model whose every parameter and BN statistic is random (none at its init value)."""
    torch.manual_seed(seed)
    model = build_model(config)
    with torch.no_grad():
        for name, tensor in model.state_dict().items():
            if tensor.is_floating_point():
                tensor.copy_(torch.rand_like(tensor) + 0.5 if name.endswith('running_var')
                             else torch.randn_like(tensor) * 0.05)
    return model.eval()


def inputs(config=TINY):
    gen = torch.Generator().manual_seed(3)
    return (torch.randn(1, 3, config.template_size, config.template_size, generator=gen),
            torch.randn(1, 3, config.search_size, config.search_size, generator=gen),
            torch.tensor([[0.25, 0.3, 0.5, 0.4]]))


def run(model: SimTrack) -> Dict[str, torch.Tensor]:
    with torch.no_grad():
        return model(*inputs(model.config))


def box_part(model: SimTrack) -> Dict[str, torch.Tensor]:
    return official_state_dict(model)


def test_official_layout_file_loads_strictly_and_reproduces_forward(tmp_path: Path):
    source = randomised()
    path = tmp_path / 'sim-tiny.pth'
    torch.save(box_part(source), path)
    model, report = load_checkpoint(path, TINY)
    assert not model.training
    assert (report.missing, report.unexpected, report.mismatched) == ([], [], [])
    assert report.loaded == len(box_part(source))
    assert model.trained_heads == {'box'} and not model.cls_head_trained
    for key, value in box_part(source).items():
        assert torch.equal(model.state_dict()[key], value), key
    expected, got = run(source), run(model)
    for key in ('pred_boxes', 'score_map_tl', 'score_map_br'):
        assert torch.equal(got[key], expected[key])


@pytest.mark.parametrize('wrap', ['net', 'state_dict', 'model', 'module', 'net+module'])
def test_wrappers_prefix_missing_counters_and_fp16(wrap: str):
    source = randomised()
    state = {k: v for k, v in box_part(source).items() if not k.endswith('num_batches_tracked')}
    state = {k: v.half() if k == 'bottleneck.weight' else v for k, v in state.items()}
    if 'module' in wrap:
        state = {f'module.{k}': v for k, v in state.items()}
    if wrap != 'module':
        state = {wrap.split('+')[0]: state, 'epoch': 50, 'settings': {'lr': 1e-4}}
    model = build_model(TINY)
    report = load_official_state_dict(model, state)
    assert (report.missing, report.unexpected, report.mismatched) == ([], [], [])
    loaded = model.state_dict()['bottleneck.weight']
    assert loaded.dtype == torch.float32
    assert torch.equal(loaded, source.bottleneck.weight.half().float())


def test_our_format_round_trip_is_atomic(tmp_path: Path):
    source = randomised(TINY.replace(fusion=True, multi_label=True))
    source.trained_heads = {'box', 'cls'}
    path = save_checkpoint(source, tmp_path / 'ckpt' / 'model.pt', metadata={'epoch': 3})
    assert sorted(p.name for p in path.parent.iterdir()) == ['model.pt']
    raw = torch.load(path, weights_only=True)
    assert raw['format'] == 'simtrack_ros' and raw['format_version'] == 1
    assert raw['class_names'] == list(CHALLENGE_NAMES)
    model, report = load_checkpoint(path)
    assert model.config == source.config and model.trained_heads == {'box', 'cls'}
    assert report.metadata == {'epoch': 3} and not report.missing and not report.unexpected
    for key, value in source.state_dict().items():
        assert torch.equal(model.state_dict()[key], value), key
    expected, got = run(source), run(model)
    assert all(torch.equal(got[k], expected[k]) for k in expected)
    with pytest.raises(ValueError, match='JSON'):
        save_checkpoint(source, tmp_path / 'bad.pt', metadata={'x': object()})


def test_class_order_is_reordered_by_name(tmp_path: Path):
    reversed_names = tuple(reversed(CHALLENGE_NAMES))
    source = randomised(TINY.replace(class_names=reversed_names))
    source.trained_heads = {'box', 'cls'}
    path = save_checkpoint(source, tmp_path / 'reversed.pt')
    model, report = load_checkpoint(path, TINY)
    assert model.class_names == CHALLENGE_NAMES and model.cls_head_trained
    assert any('reordered' in note for note in report.notes)
    expected, got = run(source)['cls_logits'], run(model)['cls_logits']
    torch.testing.assert_close(got, expected.flip(1))


def test_mismatched_class_names_are_refused(tmp_path: Path):
    source = randomised(TINY.replace(class_names=CHALLENGE_NAMES[:9]))
    path = save_checkpoint(source, tmp_path / 'nine.pt')
    with pytest.raises(CheckpointError, match='classes do not match'):
        load_checkpoint(path, TINY)


def test_guide_style_flat_checkpoint_needs_its_class_order():
    source = randomised()
    state = dict(source.state_dict())
    index = [CHALLENGE_NAMES.index(name) for name in DEFAULT_PRIORITY]
    for key in ('classifier.weight', 'classifier.bias'):
        state[key] = state[key][index]  # rows in the guide's dataset order
    skipped = build_model(TINY)
    report = load_official_state_dict(skipped, state)
    assert skipped.trained_heads == {'box'}
    assert any('class order' in note for note in report.notes)
    loaded = build_model(TINY)
    load_official_state_dict(loaded, state, class_names=DEFAULT_PRIORITY)
    assert loaded.trained_heads == {'box', 'cls'}
    assert torch.equal(loaded.classifier.weight, source.classifier.weight)


def test_fusion_mismatch_is_reported(tmp_path: Path):
    fused = randomised(TINY.replace(fusion=True))
    path = save_checkpoint(fused, tmp_path / 'fused.pt')
    _, report = load_checkpoint(path, TINY)
    assert report.unexpected == ['fusion_layer.weight', 'fusion_layer.bias']
    assert any('fusion off' in note for note in report.notes)
    plain_path = save_checkpoint(randomised(), tmp_path / 'plain.pt')
    model, report = load_checkpoint(plain_path, TINY.replace(fusion=True))
    assert not model.fusion_layer.weight.any()
    assert any('stays zero' in note for note in report.notes)


def test_wrong_architecture_names_the_mismatch(tmp_path: Path):
    narrow = TINY.replace(width=96, heads=3)
    torch.save(box_part(randomised()), tmp_path / 'tiny.pth')
    with pytest.raises(CheckpointError) as error:
        load_checkpoint(tmp_path / 'tiny.pth', narrow)
    message = str(error.value)
    assert 'width 192' in message and 'width 96' in message
    assert 'backbone.visual.conv1.weight: model [96, 3, 16, 16], checkpoint [192, 3, 16, 16]' \
        in message
    b16_state = box_part(build_model('simtrack-b16'))
    with pytest.raises(CheckpointError, match='12 layers'):
        load_official_state_dict(build_model(TINY), b16_state)
    partial = {k: v for k, v in box_part(randomised()).items() if 'box_head' not in k}
    with pytest.raises(CheckpointError, match=r'missing \(52\)'):  # + 8 BN counters
        load_official_state_dict(build_model(TINY), partial)


class _Payload:
    executed = False

    def __reduce__(self):
        return (_mark_executed, ())


def _mark_executed():
    _Payload.executed = True
    return {}


def test_bad_files_give_clear_errors(tmp_path: Path):
    garbage = tmp_path / 'garbage.pth'
    garbage.write_bytes(bytes(range(256)) * 8)
    good = tmp_path / 'good.pth'
    torch.save(box_part(randomised()), good)
    truncated = tmp_path / 'truncated.pth'
    truncated.write_bytes(good.read_bytes()[:good.stat().st_size // 2])
    unsafe = tmp_path / 'unsafe.pth'
    torch.save({'state_dict': _Payload()}, unsafe)
    not_weights = tmp_path / 'list.pth'
    torch.save([1, 2, 3], not_weights)
    unknown = tmp_path / 'unknown.pth'
    torch.save({'encoder.weight': torch.zeros(2)}, unknown)
    cases = [(garbage, 'not a readable PyTorch file'), (truncated, 'not a readable PyTorch file'),
             (unsafe, r'no tensors found .*skipped non-tensor objects: .*_mark_executed'),
             (not_weights, 'no state dict'),
             (unknown, 'unrecognised checkpoint layout'), (tmp_path / 'nope.pth', 'no such file')]
    for path, reason in cases:
        with pytest.raises(CheckpointError, match=reason) as error:
            load_checkpoint(path, TINY)
        assert str(path) in str(error.value)
        exc = error.value  # no chained low-level traceback
        assert exc.__cause__ is None and (exc.__context__ is None or exc.__suppress_context__)
    assert not _Payload.executed
    future = save_checkpoint(randomised(), tmp_path / 'future.pt')
    raw = torch.load(future, weights_only=True)
    raw['format_version'] = 99
    torch.save(raw, future)
    with pytest.raises(CheckpointError, match='format_version 99'):
        load_checkpoint(future)


def test_truncated_checkpoint_says_what_is_wrong_and_what_to_do(tmp_path: Path, capsys):
    good = save_checkpoint(randomised(), tmp_path / 'good.pt')
    data = good.read_bytes()
    for cut in (100, len(data) // 2, len(data) - 10):
        truncated = tmp_path / f'cut{cut}.pt'
        truncated.write_bytes(data[:cut])
        with pytest.raises(CheckpointError) as error:
            load_checkpoint(truncated)
        message = str(error.value)
        assert message.startswith(f'checkpoint {truncated}: not a readable PyTorch file '
                                  '(truncated or corrupt: the zip archive is incomplete); '
                                  'copy or download it again [RuntimeError: ')
        assert message.endswith(']') and '\n' not in message
        assert 'miniz' not in message and 'likelihood' not in message
    assert convert_main(['weights-only', str(truncated), str(tmp_path / 'out.pt')]) == 2
    err = capsys.readouterr().err
    assert err.startswith('convert_checkpoint: error: checkpoint ') and err.count('\n') == 1
    assert 'copy or download it again' in err and not (tmp_path / 'out.pt').exists()
    (tmp_path / 'empty.pt').write_bytes(b'')
    with pytest.raises(CheckpointError, match=r'\(the file is empty\); copy or download'):
        load_checkpoint(tmp_path / 'empty.pt')
    np.savez(tmp_path / 'arrays.npz', a=np.zeros(3))             # a whole zip, not torch's
    with pytest.raises(CheckpointError, match='a zip archive, but not one written by torch'):
        load_checkpoint(tmp_path / 'arrays.npz')


def test_long_exception_text_is_cut_between_words():
    long = RuntimeError('first sentence: ' + 'word ' * 60 + 'end. Second sentence.')
    short = _short(long)
    assert short.startswith('RuntimeError: first sentence: word') and short.endswith(' word ...')
    assert _short(ValueError('One. Two')) == 'ValueError: One'


def _clip_state(seed: int = 0, width: int = 192) -> Dict[str, torch.Tensor]:
    torch.manual_seed(seed)
    visual = VisionTransformer(224, 16, width, 4, 3, 128)
    state = {f'visual.{k}': v for k, v in visual.state_dict().items()}
    state['token_embedding.weight'] = torch.randn(10, 8)  # text tower: ignored
    return state


class _ClipHolder(nn.Module):
    """A stand-in for OpenAI's scripted CLIP: a ``visual`` child in a TorchScript archive."""

    def __init__(self) -> None:
        super().__init__()
        self.visual = VisionTransformer(224, 16, 192, 4, 3, 128)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * 2


@pytest.mark.filterwarnings('ignore::DeprecationWarning')  # torch.jit.trace, used to mimic CLIP
def test_clip_weights_from_state_dict_and_torchscript(tmp_path: Path):
    state = _clip_state()
    model = build_model(TINY)
    report = load_clip_weights(model, state)
    assert report.loaded == len(model.backbone.visual.state_dict())
    assert any('ignored 1' in note for note in report.notes)
    assert torch.equal(model.backbone.visual.conv1.weight, state['visual.conv1.weight'])
    assert model.trained_heads == set()
    torch.manual_seed(1)
    holder = _ClipHolder()
    archive = tmp_path / 'ViT-tiny.pt'
    torch.jit.trace(holder, torch.zeros(1)).save(str(archive))
    model, report = load_checkpoint(archive, TINY)
    assert torch.equal(model.backbone.visual.proj, holder.visual.proj)
    plain = tmp_path / 'clip_state.pt'
    torch.save(state, plain)
    model, _ = load_checkpoint(plain, TINY)
    assert torch.equal(model.backbone.visual.class_embedding, state['visual.class_embedding'])
    with pytest.raises(CheckpointError, match='CLIP image tower does not fit'):
        load_clip_weights(build_model(TINY), _clip_state(width=96))


def test_convert_cli_round_trip(tmp_path: Path, capsys):
    source = randomised()
    official = tmp_path / 'official.pth'
    torch.save(box_part(source), official)
    ours = tmp_path / 'ours.pt'
    back = tmp_path / 'back.pth'
    assert convert_main(['official-to-ours', str(official), str(ours), '--config', 'tiny']) == 0
    assert convert_main(['ours-to-official', str(ours), str(back)]) == 0
    out = capsys.readouterr().out
    assert 'loaded' in out and 'wrote' in out
    restored = torch.load(back, weights_only=True)
    original = box_part(source)
    assert list(restored) == list(original)
    assert all(torch.equal(restored[k], original[k]) for k in original)
    assert not any(k.startswith(CLASS_PREFIXES) for k in restored)
    assert convert_main(['official-to-ours', str(tmp_path / 'missing.pth'), str(ours)]) == 2
    err = capsys.readouterr().err
    assert err.startswith('convert_checkpoint: error: checkpoint ') and 'no such file' in err
    blocked = tmp_path / 'file'
    blocked.write_text('')
    assert convert_main(['ours-to-official', str(ours), str(blocked / 'x.pth')]) == 2
    err = capsys.readouterr().err
    assert err.startswith('convert_checkpoint: error: ') and err.count('\n') == 1


def test_convert_to_official_warns_about_what_it_loses(tmp_path: Path, capsys):
    model = build_model(get_config('tiny', fusion=True))
    model.trained_heads = set()
    ours = save_checkpoint(model, tmp_path / 'clip_only.pt')
    assert convert_main(['ours-to-official', str(ours), str(tmp_path / 'a.pth')]) == 0
    err = capsys.readouterr().err
    assert 'box head has no trained weights' in err and 'fusion_layer' not in err
    with torch.no_grad():
        model.fusion_layer.weight.fill_(0.01)
    model.trained_heads = {'box', 'cls'}
    ours = save_checkpoint(model, tmp_path / 'fused.pt')
    assert convert_main(['ours-to-official', str(ours), str(tmp_path / 'b.pth')]) == 0
    err = capsys.readouterr().err
    assert 'trained fusion_layer is dropped' in err and 'box head' not in err


class _Evil:
    """Unpickling this opens (so creates) ``marker``: a side effect no load may trigger."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, 'w'))


def _fake_official_modules() -> List[str]:
    """Register the official repo's modules with stand-in classes; return their names."""
    classes = {'lib.train.admin.settings': ['Settings'], 'lib.train.admin.stats': ['AverageMeter'],
               'lib.utils': ['NetConstructor']}
    added = [name for name in ('lib', 'lib.train', 'lib.train.admin', *classes)
             if name not in sys.modules]
    for module_name in added:
        sys.modules[module_name] = types.ModuleType(module_name)
    for module_name, names in classes.items():
        for name in names:
            cls = type(name, (), {'__module__': module_name})
            setattr(sys.modules[module_name], name, cls)
    return added


@pytest.mark.parametrize('zip_format', [True, False], ids=['zip', 'legacy'])
def test_official_training_checkpoint_loads_weights_and_skips_objects(tmp_path: Path,
                                                                      zip_format: bool):
    import numpy as np
    marker = tmp_path / 'pwned'
    source = randomised()
    names = _fake_official_modules()
    try:
        settings = sys.modules['lib.train.admin.settings'].Settings()
        settings.env, settings.hook = {'workspace_dir': '/x'}, _Evil(str(marker))
        meter = sys.modules['lib.train.admin.stats'].AverageMeter()
        meter.avg, meter.count = np.float64(0.25), np.int64(7)
        constructor = sys.modules['lib.utils'].NetConstructor()
        constructor.fun_name, constructor.kwds = 'build_simtrack', {'cfg': None}
        path = tmp_path / 'SimTrack_ep0050.pth.tar'
        torch.save({'epoch': 50, 'actor_type': 'SimTrackActor', 'net_type': 'SimTrack',
                    'net': box_part(source), 'net_info': None, 'constructor': constructor,
                    'optimizer': {'state': {0: {'exp_avg': torch.ones(3)}}, 'param_groups': []},
                    'stats': {'train': {'Loss/total': meter}}, 'settings': settings}, path,
                   _use_new_zipfile_serialization=zip_format)
    finally:
        for name in names:
            del sys.modules[name]
    with pytest.raises(Exception):  # safe loading refuses it; a plain unpickle cannot even run
        torch.load(path, weights_only=True)
    safe_before = set(torch.serialization.get_safe_globals())
    model, report = load_checkpoint(path, TINY)
    assert not marker.exists()
    assert (report.missing, report.unexpected, report.mismatched) == ([], [], [])
    assert report.loaded == len(box_part(source))
    assert model.trained_heads == {'box'}
    assert all(torch.equal(v, box_part(model)[k]) for k, v in box_part(source).items())
    expected, got = run(source), run(model)
    for key in ('pred_boxes', 'score_map_tl', 'score_map_br'):
        assert torch.equal(got[key], expected[key])
    note = next(n for n in report.notes if n.startswith('skipped non-tensor objects: '))
    for name in ('lib.train.admin.settings.Settings', 'lib.train.admin.stats.AverageMeter',
                 'lib.utils.NetConstructor', f'{open.__module__}.open', 'numpy'):
        assert name in note
    assert 'skipped non-tensor objects' in report.summary()
    assert not any(name in sys.modules for name in names)  # nothing was imported
    assert set(torch.serialization.get_safe_globals()) == safe_before  # only during the read
    raw, _ = read_checkpoint(path)
    settings = raw['settings']  # an inert placeholder that keeps the pickled state as data
    assert isinstance(settings, Placeholder) and settings.state['env'] == {'workspace_dir': '/x'}
    assert settings.state['hook'].args == (str(marker), 'w') and not marker.exists()
    model = build_model(TINY)
    assert load_official_state_dict(model, path).loaded == len(box_part(source))
    assert not marker.exists()


def test_malicious_top_level_pickle_runs_no_code(tmp_path: Path):
    marker = tmp_path / 'pwned'
    evil = tmp_path / 'evil.pth'
    torch.save(_Evil(str(marker)), evil)
    shell = tmp_path / 'shell.pth'
    torch.save({'net': _Shell(str(tmp_path / 'pwned2'))}, shell)
    opener, system = f'{open.__module__}.open', f'{os.system.__module__}.system'
    with pytest.raises(CheckpointError, match=rf'holds a {opener} object, not weights'):
        load_checkpoint(evil, TINY)
    # torch blocks the os/sys modules outright: no placeholder either, the file is refused.
    with pytest.raises(CheckpointError, match=rf'even with {system} as inert placeholders; '
                                              rf'no code ran .*{system}'):
        load_checkpoint(shell, TINY)
    with pytest.raises(CheckpointError, match='no code ran'):
        load_official_state_dict(build_model(TINY), evil)
    assert not marker.exists() and not (tmp_path / 'pwned2').exists()
    torch.load(evil, weights_only=False).close()  # the payload is live: plain loading runs it
    assert marker.exists()


class _Shell:
    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f'touch {self.marker}',))


def test_convert_weights_only_drops_the_training_state(tmp_path: Path):
    from simtrack_ros.model.checkpoint import save_checkpoint
    model = build_model('tiny')
    model.trained_heads = {'box', 'cls'}
    trained = save_checkpoint(model, tmp_path / 'last.pth', metadata={'epoch': 3},
                              training={'optimizer': {'state': {}, 'lr': [0.1] * 1000}})
    slim = tmp_path / 'slim.pth'
    assert convert_main(['weights-only', str(trained), str(slim)]) == 0
    raw = torch.load(slim, weights_only=True)
    assert 'training' not in raw and raw['metadata']['epoch'] == 3
    assert slim.stat().st_size < trained.stat().st_size
    loaded, _ = load_checkpoint(slim)
    assert loaded.trained_heads == {'box', 'cls'}
    for key, value in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key
