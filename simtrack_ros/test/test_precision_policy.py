"""precision='auto' follows the hardware; refused and warned-about requests (fake CPU flags)."""
from __future__ import annotations

import warnings

import pytest
import torch

from simtrack_ros.model import build_model, get_config
from simtrack_ros.tracking import precision_policy
from simtrack_ros.tracking.engine import EngineOptions, InferenceEngine
from simtrack_ros.tracking.engine_factory import resolve_runtime
from simtrack_ros.tracking.precision_policy import choose_precision

CPU = torch.device('cpu')
GPU = torch.device('cuda', 0)       # a device object only: nothing runs on it here
#: A Xeon whose hypervisor hides AVX512-BF16 and AMX (the measured 3x-slower bf16 machine).
NO_BF16 = frozenset({'avx2', 'avx512f', 'avx512_vnni'})
WITH_BF16 = NO_BF16 | {'avx512_bf16', 'amx_bf16', 'amx_int8'}
NO_INT8 = frozenset({'avx2'})
WIDE, NARROW = 768, 192             # SimTrack-B/16, small


@pytest.mark.parametrize('runtime', ['torch', 'openvino', 'onnxruntime'])
def test_auto_is_fp32_on_a_cpu_without_native_bf16(runtime):
    choice = choose_precision('auto', runtime, CPU, WIDE, NO_BF16)
    assert choice.precision == 'fp32'
    assert choice.reason.startswith('auto: ')


@pytest.mark.parametrize('runtime', ['torch', 'openvino'])
def test_auto_is_bf16_with_native_bf16_for_a_wide_model_only(runtime):
    wide = choose_precision('auto', runtime, CPU, WIDE, WITH_BF16)
    assert wide.precision == 'bf16' and 'native bf16' in wide.reason
    narrow = choose_precision('auto', runtime, CPU, NARROW, WITH_BF16)
    assert narrow.precision == 'fp32' and '192 wide' in narrow.reason
    assert choose_precision('auto', runtime, CPU, 384, frozenset({'amx_bf16'})).precision == \
        'bf16'


def test_auto_never_picks_bf16_on_onnxruntime_nor_int8_anywhere():
    assert choose_precision('auto', 'onnxruntime', CPU, WIDE, WITH_BF16).precision == 'fp32'
    for runtime in ('torch', 'openvino', 'onnxruntime'):
        for flags in (NO_BF16, WITH_BF16):
            assert choose_precision('auto', runtime, CPU, WIDE, flags).precision != 'int8'


def test_auto_on_a_gpu_asks_torch_for_bf16_support(monkeypatch):
    monkeypatch.setattr(torch.cuda, 'get_device_name', lambda device=None: 'Test GPU')
    monkeypatch.setattr(torch.cuda, 'is_bf16_supported', lambda: True)
    choice = choose_precision('auto', 'torch', GPU, WIDE, NO_BF16)
    assert choice.precision == 'bf16' and 'Test GPU' in choice.reason
    monkeypatch.setattr(torch.cuda, 'is_bf16_supported', lambda: False)
    assert choose_precision('auto', 'torch', GPU, WIDE, WITH_BF16).precision == 'fp32'


@pytest.mark.parametrize('runtime', ['openvino', 'onnxruntime'])
def test_explicit_bf16_refused_on_exported_runtimes_without_native_bf16(runtime):
    with pytest.raises(ValueError, match='bf16') as error:
        choose_precision('bf16', runtime, CPU, WIDE, NO_BF16)
    if runtime == 'openvino':
        assert 'about 3x slower' in str(error.value) and '940' in str(error.value)
    else:
        assert 'no bf16 mode' in str(error.value)


def test_explicit_bf16_with_native_bf16_or_on_torch():
    assert choose_precision('bf16', 'openvino', CPU, NARROW, WITH_BF16).precision == 'bf16'
    # The torch runtime keeps running it; InferenceEngine warns about the slowdown.
    torch_choice = choose_precision('bf16', 'torch', CPU, WIDE, NO_BF16)
    assert torch_choice.precision == 'bf16' and '3x slower' in torch_choice.reason


def test_int8_needs_an_exported_runtime_and_warns_without_vnni():
    with pytest.raises(ValueError, match="runtime 'onnxruntime'"):
        choose_precision('int8', 'torch', CPU, WIDE, WITH_BF16)
    with pytest.warns(RuntimeWarning, match='VNNI'):
        choice = choose_precision('int8', 'openvino', CPU, WIDE, NO_INT8)
    assert choice.precision == 'int8' and 'int8-static' in choice.reason
    with warnings.catch_warnings():
        warnings.simplefilter('error')
        assert 'int8-dynamic' in choose_precision('int8', 'onnxruntime', CPU, WIDE,
                                                  NO_BF16).reason


def test_fp16_needs_cuda_and_bad_names_are_refused():
    with pytest.raises(ValueError, match='CUDA'):
        choose_precision('fp16', 'openvino', CPU, WIDE, WITH_BF16)
    assert choose_precision('fp16', 'torch', GPU, WIDE, NO_BF16).precision == 'fp16'
    assert choose_precision('fp32', 'openvino', CPU, WIDE, WITH_BF16).reason == 'requested fp32'
    with pytest.raises(ValueError, match='precision must be one of'):
        choose_precision('int4', 'torch', CPU, WIDE, NO_BF16)
    with pytest.raises(ValueError, match='runtime'):
        choose_precision('fp32', 'auto', CPU, WIDE, NO_BF16)


def test_flags_default_to_the_host_cpu(monkeypatch):
    monkeypatch.setattr(precision_policy, 'cpu_flags', lambda: WITH_BF16)
    assert choose_precision('auto', 'openvino', CPU, WIDE).precision == 'bf16'
    monkeypatch.setattr(precision_policy, 'cpu_flags', lambda: NO_BF16)
    assert choose_precision('auto', 'openvino', CPU, WIDE).precision == 'fp32'


@pytest.mark.parametrize('kwargs, message', [
    ({'runtime': 'tensorrt'}, 'runtime must be one of'),
    ({'runtime': 'torch', 'precision': 'int8'}, 'int8'),
    ({'runtime': 'openvino', 'cuda_graphs': True}, 'cuda_graphs'),
    ({'runtime': 'openvino', 'device': 'cuda'}, 'runs on the CPU'),
])
def test_engine_options_check_runtime_combinations(kwargs, message):
    with pytest.raises(ValueError, match=message):
        EngineOptions(**kwargs)


def test_defaults_are_auto_and_a_module_runs_with_torch():
    options = EngineOptions()
    assert (options.runtime, options.precision) == ('auto', 'auto')
    assert resolve_runtime('auto', exported=False) == 'torch'
    assert resolve_runtime('auto', exported=True) == 'openvino'     # installed here
    assert resolve_runtime('onnxruntime', exported=True) == 'onnxruntime'


def test_torch_engine_resolves_auto_by_width(monkeypatch):
    """The default options keep the small models in fp32 even on a bf16 CPU; wide ones not."""
    monkeypatch.setattr(precision_policy, 'cpu_flags', lambda: WITH_BF16)
    narrow = InferenceEngine(build_model('tiny'), EngineOptions(device='cpu'))
    assert (narrow.runtime, narrow.precision) == ('torch', 'fp32')
    wide = InferenceEngine(build_model(get_config('tiny', width=384, heads=6)),
                           EngineOptions(device='cpu'))
    assert wide.precision == 'bf16' and wide.choice.reason.startswith('auto: bf16')
    monkeypatch.setattr(precision_policy, 'cpu_flags', lambda: NO_BF16)
    assert InferenceEngine(wide.model, EngineOptions(device='cpu')).precision == 'fp32'
    with pytest.raises(ValueError, match='int8'):
        InferenceEngine(wide.model, EngineOptions(device='cpu', precision='int8'))
