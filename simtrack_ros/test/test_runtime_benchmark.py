"""The runtime benchmark: a smoke run on the small config, its statistics and its interleaving."""
from __future__ import annotations

import json
from pathlib import Path
from typing import List

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / 'benchmarks'


@pytest.fixture
def benchmark(monkeypatch):
    """Import the benchmark module the way the script runs (its folder on sys.path)."""
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    import runtime_benchmark
    return runtime_benchmark


def test_statistics_are_median_iqr_and_ratios_to_the_official_runner(benchmark):
    row = benchmark.statistics_row([10.0, 20.0, 30.0, 40.0], [20.0, 40.0, 60.0, 80.0])
    assert row == {'median_ms': 25.0, 'q25_ms': 17.5, 'q75_ms': 32.5, 'iqr_ms': 15.0,
                   'vs_official': 2.0, 'paired_vs_official': 2.0}


def test_runners_are_interleaved_in_a_rotating_order_after_warm_up(benchmark):
    calls: List[str] = []

    def runner(name: str):
        return lambda frame: calls.append(name)

    samples = benchmark.interleaved({name: runner(name) for name in 'abc'}, [None], rounds=2,
                                    warmup=1)
    assert calls == list('abc' 'bca' 'cab')
    assert {name: len(values) for name, values in samples.items()} == {'a': 2, 'b': 2, 'c': 2}


def test_smoke_run_on_the_small_config(benchmark, tmp_path, capsys):
    out = tmp_path / 'runtime.json'
    assert benchmark.main(['--configs', 'small', '--targets', '1', '2', '--rounds', '2',
                           '--warmup', '1', '--only', 'torch:fp32', 'openvino:fp32',
                           'torch:fp16', '--json', str(out)]) == 0
    printed = capsys.readouterr().out
    for line in ('# cpu: ', '# cpu_flags: avx2=', '# openvino: ', '# precision auto for small: '
                 'fp32', 'skipped: small torch fp16: fp16 needs CUDA'):
        assert line in printed, printed
    report = json.loads(out.read_text())
    assert {'cpu', 'cpu_flags', 'native_bf16', 'torch_threads', 'openvino'} <= set(
        report['machine'])
    assert report['auto'][0]['config'] == 'small'
    rows = {(row['targets'], row['runner']): row for row in report['rows']}
    assert set(rows) == {(targets, runner) for targets in (1, 2)
                         for runner in (benchmark.OFFICIAL, 'torch fp32', 'openvino fp32')}
    for (targets, runner), row in rows.items():
        assert row['rounds'] == len(row['samples_ms']) == 2
        assert 0 < row['q25_ms'] <= row['median_ms'] <= row['q75_ms']
        assert f'{"small":<13} {targets:>7} {runner}' in printed
    assert rows[1, benchmark.OFFICIAL]['vs_official'] == 1.0
    assert report['skipped'] == [{'config': 'small', 'runner': 'torch fp16',
                                  'reason': 'fp16 needs CUDA'}]
