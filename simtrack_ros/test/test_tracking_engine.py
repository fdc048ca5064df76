"""Engine options, device resolution, precision fallbacks and outputs."""
from __future__ import annotations

import warnings

import pytest
import torch

from simtrack_ros.model import build_model
from simtrack_ros.tracking.engine import EngineOptions, InferenceEngine, resolve_device

CUDA = torch.cuda.is_available()
no_cuda_only = pytest.mark.skipif(CUDA, reason='checks the behaviour without CUDA')


@pytest.mark.parametrize('kwargs, message', [
    ({'device': 'gpu'}, 'device'),
    ({'device': 'cuda:x'}, 'device'),
    ({'device': 'cuda:-1'}, 'device'),
    ({'device': 0}, 'device'),
    ({'precision': 'int4'}, 'precision'),
    ({'precision': 'int8', 'runtime': 'torch'}, 'int8'),
    ({'precision': 'float16'}, 'precision'),
    ({'cuda_graphs': 'yes'}, 'cuda_graphs'),
    ({'crop_on_device': 1}, 'crop_on_device'),
    ({'device': 'cpu', 'precision': 'fp16'}, 'fp16'),
    ({'device': 'cpu', 'cuda_graphs': True}, 'cuda_graphs'),
])
def test_options_validated(kwargs, message):
    with pytest.raises(ValueError, match=message):
        EngineOptions(**kwargs)


def test_valid_options():
    for device in ('auto', 'cpu', 'cuda', 'cuda:1'):
        EngineOptions(device=device, precision='bf16')
    EngineOptions(device='cuda', precision='fp16', cuda_graphs=True, crop_on_device=False)


@no_cuda_only
def test_auto_device_falls_back_to_cpu_with_warning():
    with pytest.warns(RuntimeWarning, match='CUDA is not available'):
        assert resolve_device('auto') == torch.device('cpu')
    with pytest.raises(RuntimeError, match='CUDA is not available'):
        resolve_device('cuda')
    with pytest.raises(ValueError):
        resolve_device('tpu')


@no_cuda_only
def test_auto_fp16_and_graphs_fall_back_on_cpu():
    model = build_model('tiny')
    with pytest.warns(RuntimeWarning):
        engine = InferenceEngine(model, EngineOptions(precision='fp16', cuda_graphs=True))
    assert (engine.device.type, engine.precision, engine.cuda_graphs) == ('cpu', 'fp32', False)
    assert engine.crop_on_device is False


def inputs(config, batch=2):
    generator = torch.Generator().manual_seed(0)
    template = torch.randn(batch, 3, config.template_size, config.template_size,
                           generator=generator)
    search = torch.randn(batch, 3, config.search_size, config.search_size, generator=generator)
    anno = torch.tensor([[0.25, 0.25, 0.5, 0.5]]).repeat(batch, 1)
    return template, search, anno


@pytest.mark.parametrize('precision', ['fp32', 'bf16'])
def test_run_returns_cpu_float32_close_to_model(precision):
    torch.manual_seed(0)
    model = build_model('tiny').eval()
    template, search, anno = inputs(model.config)
    with torch.no_grad():
        expected = model(template, search, anno, run_cls_head=False)
    engine = InferenceEngine(model, EngineOptions(device='cpu', precision=precision))
    out = engine.run(engine.encode_template(template, anno), search, run_cls_head=False)
    assert set(out) == {'pred_boxes', 'score_map_tl', 'score_map_br'}
    for key, value in out.items():
        assert value.dtype == torch.float32 and value.device.type == 'cpu'
        assert value.shape == expected[key].shape
    tolerance = 0 if precision == 'fp32' else 0.05
    torch.testing.assert_close(out['pred_boxes'], expected['pred_boxes'],
                               rtol=0, atol=tolerance)
    with_cls = engine.run(engine.encode_template(template, anno), search, run_cls_head=True)
    assert with_cls['cls_logits'].shape == (2, model.config.num_classes)


@pytest.mark.skipif(not CUDA, reason='needs a CUDA device')
@pytest.mark.parametrize('precision', ['fp32', 'fp16', 'bf16'])
def test_cuda_graphs_match_eager(precision):
    torch.manual_seed(0)
    model = build_model('tiny')
    template, search, anno = inputs(model.config, batch=3)
    eager = InferenceEngine(model, EngineOptions(device='cuda', precision=precision))
    graphs = InferenceEngine(model, EngineOptions(device='cuda', precision=precision,
                                                  cuda_graphs=True))
    tokens = eager.encode_template(template, anno)
    expected = eager.run(tokens, search)
    for _ in range(2):   # capture, then replay
        got = graphs.run(tokens, search)
        for key, value in expected.items():
            torch.testing.assert_close(got[key], value, rtol=1e-3, atol=1e-3)


def test_bf16_on_a_cpu_without_native_bf16_warns(monkeypatch):
    from simtrack_ros.tracking import engine as engine_module
    model = build_model('tiny')
    monkeypatch.setattr(engine_module, 'native_bf16', lambda: False)
    with pytest.warns(RuntimeWarning, match='about 3x slower than fp32'):
        InferenceEngine(model, EngineOptions(device='cpu', precision='bf16'))
    monkeypatch.setattr(engine_module, 'native_bf16', lambda: True)
    with warnings.catch_warnings():
        warnings.simplefilter('error')
        InferenceEngine(model, EngineOptions(device='cpu', precision='bf16'))
        InferenceEngine(model, EngineOptions(device='cpu', precision='fp32'))


def test_cpu_features_read_from_cpuinfo(monkeypatch):
    from simtrack_ros.tracking import cpu_features
    text = ('processor\t: 0\nmodel name\t: Test CPU 9000\n'
            'flags\t\t: fpu avx2 avx512f avx512_vnni\n\nprocessor\t: 1\nflags\t: avx512_bf16\n')
    monkeypatch.setattr(cpu_features, '_cpuinfo', lambda: text)
    monkeypatch.setattr(cpu_features.platform, 'machine', lambda: 'x86_64')
    assert cpu_features.cpu_model() == 'Test CPU 9000'
    assert cpu_features.native_bf16() is False        # the first processor's flags count
    assert cpu_features.describe_cpu() == 'Test CPU 9000 [avx2 avx512f avx512_vnni]'
    monkeypatch.setattr(cpu_features, '_cpuinfo', lambda: text.replace('avx2', 'amx_bf16'))
    assert cpu_features.native_bf16() is True
    monkeypatch.setattr(cpu_features, '_cpuinfo', lambda: '')
    assert cpu_features.native_bf16() is None
