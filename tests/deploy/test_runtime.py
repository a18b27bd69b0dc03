"""The latency harness: interleaving, variants and table (no timing assertions)."""
import pytest
import torch

from rfcr.deploy.export import neck_wrapper
from rfcr.deploy.runtime import (Latency, format_latency_table, measure_deploy_latency,
                                 time_interleaved, torch_runner)
from rfcr.models import RFCR


def test_time_interleaved_calls_every_runner_in_rotating_order():
    calls = []
    runners = {name: (lambda name=name: calls.append(name)) for name in 'abc'}
    rows = time_interleaved(runners, warmup=1, runs=3)
    assert [r.name for r in rows] == ['a', 'b', 'c']
    assert all(len(r.times_ms) == 3 and r.median_ms >= 0 for r in rows)
    assert calls == list('abc') + list('abc') + list('bca') + list('cab')


@pytest.mark.parametrize('kwargs, match', [
    (dict(warmup=-1), r'warmup must be an int >= 0, got -1'),
    (dict(runs=0), r'runs must be an int >= 1, got 0'),
])
def test_time_interleaved_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        time_interleaved({'a': lambda: None}, **kwargs)


def test_torch_runner_channels_last_leaves_the_module_alone():
    conv = torch.nn.Conv2d(3, 8, 3)
    x = torch.randn(1, 3, 16, 16)
    out = torch_runner(conv, (x, ), channels_last=True)()
    assert out.is_contiguous(memory_format=torch.channels_last)
    assert conv.weight.is_contiguous()
    torch.testing.assert_close(out, conv(x).detach())


def test_unfolded_eager_runner_runs_the_own_layers():
    neck = RFCR((8, 16, 24), collect_channels=8, fuse_channels=8).eval()
    feats = [torch.rand(1, 8, 16, 16), torch.rand(1, 16, 8, 8), torch.rand(1, 24, 4, 4)]
    torch_runner(neck, (feats, ), own_layers=True)()
    assert '_folded_cache' not in neck.__dict__
    torch_runner(neck, (feats, ))()  # plain eval mode: the folded copy
    assert neck.__dict__['_folded_cache']['folded'] is not None


def test_measure_deploy_latency_eager_only():
    neck = neck_wrapper(RFCR((8, 16, 24), collect_channels=8, fuse_channels=8))
    feats = (torch.rand(1, 8, 16, 16), torch.rand(1, 16, 8, 8), torch.rand(1, 24, 4, 4))
    rows = measure_deploy_latency(neck, feats, runtimes=['torch'], channels_last=False,
                                  warmup=0, runs=1, threads=1)
    assert [r.name for r in rows] == ['eager', 'eager eval-path', 'eager deploy']
    assert isinstance(neck.module, RFCR)  # folding worked on a copy
    with pytest.raises(ValueError, match=r"runtimes must be a non-empty subset of \('torch', "
                                         r"'onnxruntime'\), got \('tensorrt',\)"):
        measure_deploy_latency(neck, feats, runtimes=['tensorrt'])


def test_format_latency_table():
    rows = [Latency('eager', (4.0, 4.0, 6.0)), Latency('onnxruntime', (1.0, 2.0, 2.0))]
    lines = format_latency_table(rows).splitlines()
    assert lines[1].split() == ['eager', '4.00', '5.60', '1.00x']
    assert lines[2].split() == ['onnxruntime', '2.00', '2.00', '2.00x']
    assert format_latency_table(rows, baseline='onnxruntime').splitlines()[1].endswith('0.50x')
    with pytest.raises(ValueError, match=r"baseline='tvm' is not one of"):
        format_latency_table(rows, baseline='tvm')
