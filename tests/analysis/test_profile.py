"""Per-runtime profiles: time per op type, node counts, what fragmentation costs."""
import pytest
import torch

from rfcr.analysis.benchmark import BenchRow, Settings
from rfcr.analysis.profile import format_profiles, profile_runtime
from rfcr.deploy.export import OnnxWrapper
from rfcr.tools import bench


def _model():
    return OnnxWrapper(torch.nn.Sequential(
        torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
        torch.nn.Conv2d(8, 8, 1))).eval()


@pytest.mark.parametrize('runtime, conv', [('eager', 'aten::conv2d'),
                                           ('onnxruntime', 'Conv'),
                                           ('openvino', 'Convolution')])
def test_profile_names_the_ops_each_runtime_runs(runtime, conv):
    p = profile_runtime(runtime, _model(), (torch.rand(1, 3, 19, 21), ), threads=1, runs=4,
                        name='toy')
    assert conv in p.by_type, p.by_type
    assert p.nodes == sum(n for _, n in p.by_type.values()) >= 2
    assert 0 < p.node_ms and p.wall_ms > 0 and p.median_node_us > 0
    assert 0 <= p.short_node_ms <= p.node_ms + 1e-9
    table = format_profiles([p])
    assert table.count('\n') == 2 and f'| toy | ' in table and conv in table
    with pytest.raises(ValueError, match=r"runtime must be one of \('eager', .*got 'tvm'"):
        profile_runtime('tvm', _model(), (torch.rand(1, 3, 8, 8), ))


def test_bench_profiles_the_rows_of_unmet_targets():
    """Targets not met or undecided are profiled, and met ones whose interval excludes the
    MAC ratio; each (row, runtime) once, all in interleaved blocks."""
    suite = bench.load_suite(bench.REPO / 'benchmarks' / 'suite.py').select(['necks'])
    settings = Settings(input_size=(64, 64), threads=1)
    rows = [BenchRow('necks', n, '', '', 'RFCR', memory_format='channels_last')
            for n in ('RFCR', 'FPN 96', 'PAFPN 96')]
    measured = dict(group='necks', a='RFCR', value=0.5, ci_lo=0.45, ci_hi=0.55)
    targets = [dict(measured, b='FPN 96', runtime='onnxruntime', verdict='not met'),
               dict(measured, b='FPN 96', runtime='eager', verdict='met'),  # MAC ratio inside
               dict(measured, b='FPN 96', runtime='best', verdict='undecided',
                    runtimes=['onnxruntime', 'eager']),
               dict(measured, b='PAFPN 96', runtime='eager', verdict='met', mac_ratio=0.9),
               dict(measured, b='PAFPN 96', runtime='onnxruntime', verdict='met',
                    mac_ratio=0.5),  # met, MAC ratio inside: nothing to explain
               dict(measured, b='PAFPN 96', runtime='onnxruntime', value=None,
                    verdict=None)]  # not measured
    profiles = bench.profile_unmet(suite, rows, targets, settings)
    assert [(p.name, p.runtime) for p in profiles] == [
        ('RFCR', 'onnxruntime'), ('FPN 96', 'onnxruntime'), ('FPN 96', 'eager'),
        ('RFCR', 'eager'), ('PAFPN 96', 'eager')]
    assert all(len(p.walls) == 20 and p.group == 'necks' for p in profiles)
    assert all(p.nodes > 3 for p in profiles)
