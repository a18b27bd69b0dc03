"""rfcr-bench end to end on tiny inputs with few rounds: the outputs and their schema.
Latency values are only checked to be positive and finite, never compared."""
import csv
import json
import math
from pathlib import Path

import pytest
import torch

from rfcr.analysis.benchmark import Target
from rfcr.analysis.report import CSV_FIELDS
from rfcr.tools import bench

ROW_KEYS = {'group', 'name', 'family', 'source', 'ref', 'params', 'macs', 'unsupported_ops',
            'memory_format', 'latency_ms', 'latency_ms_by_format', 'channels_last_speedup',
            'ratio_vs_ref', 'peak_memory_mib'}
TINY = ['--input-size', '64', '--repeats', '2', '--warmup', '1', '--threads', '1',
        '--no-progress']


def _finite(x):
    return isinstance(x, (int, float)) and math.isfinite(x) and x > 0


def _check_rows(result):
    for row in result['rows']:
        assert 'error' not in row, row.get('error')
        assert ROW_KEYS <= set(row), ROW_KEYS - set(row)
        assert row['memory_format'] in ('contiguous', 'channels_last')
        assert set(row['latency_ms_by_format']) == {'contiguous', 'channels_last'}
        assert _finite(row['channels_last_speedup'])
        for stats in [row['latency_ms'], row['ratio_vs_ref']]:
            assert all(_finite(stats[k]) for k in ('median', 'p10', 'p90'))
        assert row['latency_ms']['n'] == 2
        assert _finite(row['params']['total']) and _finite(row['macs']['total'])
        assert _finite(row['peak_memory_mib'])
        assert row['unsupported_ops'] == {}


def test_necks_suite(tmp_path, capsys):
    result = bench.run(['--suite', 'necks', '--out-dir', str(tmp_path)] + TINY)
    names = [r['name'] for r in result['rows']]
    assert names == ['RFCR', 'seed-port RFCR', 'FPN 96', 'PAFPN 96']
    _check_rows(result)
    rfcr = result['rows'][0]
    assert rfcr['ratio_vs_ref']['median'] == 1.0 and rfcr['ref'] == 'RFCR'
    assert result['meta']['finite_ratios'] is True
    assert result['meta']['input_size'] == [64, 64] and result['meta']['threads'] == 1
    assert result['meta']['isa'].endswith(f'ATen kernels: {torch.backends.cpu.get_cpu_capability()}')
    assert result['targets'] == []  # the necks group has none
    timings = result['timings_s']['necks']['RFCR']
    assert set(timings) == {'contiguous', 'channels_last', 'eager'}
    assert timings['eager'] == timings[rfcr['memory_format']]

    files = {p.name for p in Path(tmp_path).iterdir()}
    assert files == {'bench.json', 'bench.csv', 'bench.md', 'bench.png'}
    assert json.loads((tmp_path / 'bench.json').read_text())['rows'][0]['name'] == 'RFCR'
    with open(tmp_path / 'bench.csv') as f:
        reader = csv.DictReader(f)
        assert tuple(reader.fieldnames) == CSV_FIELDS
        assert [r['name'] for r in reader] == names
    out = capsys.readouterr().out
    assert '| model | params M' in out and 'MACs: multiply-accumulates' in out
    assert result['meta']['isa'] in out  # the CPU and its ISA under every table


def test_user_configs_against_a_baseline(tmp_path):
    configs = ['mmdet::yolo/yolov3_mobilenetv2_8xb24-320-300e_coco.py',
               'configs/swapin/yolov3_mobilenetv2-trunc_rfcr_8xb24-320-300e_coco.py']
    result = bench.run(['--configs', *configs, '--out-dir', str(tmp_path), '--no-plot',
                         '--no-peak-memory', '--memory-format', 'channels_last'] + TINY)
    base, swap = result['rows']
    assert base['name'] == 'yolov3_mobilenetv2_8xb24-320-300e_coco' == swap['ref']
    for row in (base, swap):
        assert set(row['params']) == {'backbone', 'neck', 'head', 'total'}
        assert set(row['macs']) == {'backbone', 'neck', 'head', 'total'}
        assert row['memory_format'] == 'channels_last' and 'peak_memory_mib' not in row
        assert _finite(row['ratio_vs_ref']['median'])
    assert swap['params']['backbone'] < base['params']['backbone']  # truncated
    assert swap['macs']['backbone'] < base['macs']['backbone']
    assert result['targets'] == []


def test_a_failing_config_is_reported_not_fatal(tmp_path):
    configs = ['mmdet::yolo/yolov3_mobilenetv2_8xb24-320-300e_coco.py', 'mmdet::yolo/nope.py']
    result = bench.run(['--configs', *configs, '--out-dir', str(tmp_path), '--no-plot',
                         '--no-peak-memory'] + TINY)
    ok, missing = result['rows']
    assert _finite(ok['latency_ms']['median'])
    assert missing['error'].startswith('FileNotFoundError: mmdet::yolo/nope.py is not in')
    assert 'latency_ms' not in missing
    result = bench.run(['--configs', configs[0], '--out-dir', str(tmp_path), '--no-plot',
                         '--cfg-options', 'model.neck.in_channels=[1,2,3]'] + TINY)
    assert 'error' in result['rows'][0] and 'latency_ms' not in result['rows'][0]
    assert result['meta']['finite_ratios'] is True  # nothing measured, nothing infinite


def test_console_entry_point_returns_nothing(tmp_path, capsys):
    assert bench.main(['--suite', 'necks', '--out-dir', str(tmp_path), '--no-plot',
                       '--no-peak-memory'] + TINY) is None
    assert '| RFCR |' in capsys.readouterr().out


def test_bad_baseline():
    with pytest.raises(ValueError, match=r'--baseline must name one of the configs'):
        bench.configs_suite(['a/b.py'], 'c', None)

def test_deploy_suite_folds_every_model_and_runs_onnxruntime(tmp_path, capsys):
    result = bench.run(['--suite', 'deploy', '--runtime', 'onnxruntime', '--out-dir',
                        str(tmp_path), '--no-plot', '--no-peak-memory'] + TINY)
    rows = {r['name']: r for r in result['rows']}
    assert list(rows) == ['yolov3_mobilenetv2_320 (folded)', 'ssdlite_mobilenetv2 (folded)',
                          'YOLO-ReT-M0.75 (folded)', 'RFCR (folded)', 'seed-port RFCR (folded)']
    for row in rows.values():
        assert 'error' not in row, row.get('error')
        assert _finite(row['ratio_vs_ref']['median'])
    # YOLO-ReT's prediction convs are composed into its neck: the head runs nothing.
    yoloret = rows['YOLO-ReT-M0.75 (folded)']
    assert yoloret['macs']['head'] == 0 and yoloret['params']['head'] == 0
    assert rows['RFCR (folded)']['ref'] == 'seed-port RFCR (folded)'
    # ONNX Runtime beside eager, every row, in the same rounds (2 timings each), each row
    # against its reference on ONNX Runtime.
    for name, row in rows.items():
        assert 'runtime_errors' not in row, row.get('runtime_errors')
        ort = row['runtimes']['onnxruntime']
        assert ort['latency_ms']['n'] == 2
        assert _finite(ort['speedup_vs_eager']['median'])
        assert _finite(ort['ratio_vs_ref']['median'])
        assert row['best_runtime'] in ('eager', 'onnxruntime')
        assert set(row['latency_ms_by_format']) == {'contiguous', 'channels_last'}
        assert _finite(row['channels_last_speedup'])
        times = result['timings_s']['deploy']
        ref = times[row['ref']]['onnxruntime']
        expected = sorted(a / b for a, b in zip(times[name]['onnxruntime'], ref))
        assert ort['ratio_vs_ref']['median'] == pytest.approx(sum(expected) / 2)
    targets = result['targets']
    assert [t['runtime'] for t in targets] == ['eager', 'eager', 'onnxruntime', 'onnxruntime',
                                               'best', 'best']
    assert all(_finite(t['value']) for t in targets)
    times = result['timings_s']['deploy']
    for t in targets[-2:]:  # each row on its own fastest runtime, paired round by round
        best = [min(('eager', 'onnxruntime'), key=lambda rt: sorted(times[row][rt])[0] +
                    sorted(times[row][rt])[1]) for row in (t['a'], t['b'])]
        assert t['runtimes'] == best
        expected = sorted(a / b for a, b in zip(times[t['a']][best[0]], times[t['b']][best[1]]))
        assert t['value'] == pytest.approx(sum(expected) / 2)
    out = capsys.readouterr().out
    assert 'deploy on ONNX Runtime' in out and '| best runtime |' in out
    with open(tmp_path / 'bench.csv') as f:
        assert all(_finite(float(r['onnxruntime_speedup_vs_eager'])) for r in csv.DictReader(f))


def test_default_suite_is_complete():
    suite = bench.default_suite()
    assert [g.name for g in suite.groups] == ['ablation-M0.75', 'ablation-M1.4',
                                              'detectors-COCO', 'necks', 'deploy',
                                              'efficientnet', 'efficientnet-deploy']
    for group in suite.groups:
        for cand in group.candidates:
            if cand.source.endswith('.py') and '::' not in cand.source:
                assert (bench.REPO / cand.source).is_file(), cand.source
    candidates = {g.name: {c.name for c in g.candidates} for g in suite.groups}
    for t in suite.targets:
        assert {t.a, t.b} <= candidates[t.group] and t.runtime == 'eager'
    names = [t.name for t in suite.targets]
    for width in ('0.75', '1.4'):  # RFCR's cost and truncation's saving, at both widths
        assert sum(f'MobileNetV2-x{width}' in n for n in names) == 2
    assert sum(n.startswith('folded: YOLO-ReT-M0.75') for n in names) == 2
    with_ort = bench.default_suite(runtimes=['onnxruntime', 'openvino']).targets
    assert [t.runtime for t in with_ort] == (['eager'] * len(names) + ['onnxruntime']
                                             * len(names) + ['openvino'] * len(names)
                                             + ['best'] * 2)
    assert [t.name for t in with_ort[:-2]] == names * 3
    assert [(t.b, t.op, t.threshold) for t in with_ort[-2:]] == [
        ('ssdlite_mobilenetv2 (folded)', '<', 1.0), ('yolov3_mobilenetv2_320 (folded)', '<=', 0.7)]


def _times(ratio_on_eager, ratio_on_ort):
    """Fake per-round times of two rows, a/b = the given ratios on each runtime."""
    b = [1.0, 2.0, 4.0]
    return {'g': {'a': {'eager': [ratio_on_eager * x for x in b],
                        'onnxruntime': [ratio_on_ort * x for x in b]},
                  'b': {'eager': b, 'onnxruntime': b}}}


@pytest.mark.parametrize('runtime, op, threshold, value, met', [
    ('eager', '<=', 0.75, 0.7, True),
    ('eager', '<', 0.7, 0.7, False),
    ('onnxruntime', '<=', 0.75, 0.9, False),
    ('onnxruntime', '>', 0.8, 0.9, True),
])
def test_targets_compare_both_rows_on_one_runtime(runtime, op, threshold, value, met):
    target = Target('t', 'g', 'a', 'b', op, threshold, runtime=runtime)
    result = target.check([], _times(0.7, 0.9))
    assert result['value'] == pytest.approx(value) and result['met'] is met
    assert result['runtime'] == runtime
    speedup = Target('t', 'g', 'a', 'b', '>=', 1.3, speedup=True).check([], _times(0.7, 0.9))
    assert speedup['value'] == pytest.approx(1 / 0.7) and speedup['met'] is True
    missing = Target('t', 'g', 'a', 'c', '<', 1).check([], _times(0.7, 0.9))
    assert missing['value'] is None and missing['met'] is None


@pytest.mark.parametrize('path', sorted(
    (bench.REPO / 'benchmarks/configs').rglob('*.py')), ids=lambda p: p.name)
def test_benchmark_configs_build_and_run(path):
    import torch
    from rfcr.utils.config import build_model
    from rfcr.models.utils import check_channels
    model = build_model(str(path))
    check_channels(model, input_size=64)
    with torch.no_grad():
        (maps, ) = model(torch.rand(1, 3, 64, 96))
    assert [m.shape[1] for m in maps] == [75, 75, 75]


def test_every_runtime_in_the_same_rounds():
    """Each model on each runtime, interleaved: per-runtime latency, the ratio to the
    reference on the same runtime, the best runtime, and the runtime table."""
    from torch import nn
    from rfcr.analysis.benchmark import Candidate, Group, Settings, run_group
    from rfcr.analysis.report import markdown
    from rfcr.deploy.runtime import EXPORTED_RUNTIMES

    def image(batch, size):
        return (torch.rand(batch, 8, *size), )

    group = Group('toy', baseline='small', repeats=3, candidates=[
        Candidate('small', 'toy', lambda: nn.Conv2d(8, 8, 1), image),
        Candidate('large', 'toy', lambda: nn.Conv2d(8, 32, 3, padding=1), image)])
    settings = Settings(input_size=(17, 23), threads=1, warmup=1, peak_memory=False,
                        memory_format='contiguous', runtimes=EXPORTED_RUNTIMES)
    rows, times = run_group(group, settings)
    for row in rows:
        assert 'runtime_errors' not in row, row.get('runtime_errors')
        assert set(row['runtimes']) == set(EXPORTED_RUNTIMES)
        assert set(times[row['name']]) == {'contiguous', 'eager', *EXPORTED_RUNTIMES}
        for rt, entry in row['runtimes'].items():
            assert entry['latency_ms']['n'] == 3 and _finite(entry['speedup_vs_eager']['median'])
            expected = sorted(a / b for a, b in zip(times[row['name']][rt], times['small'][rt]))
            assert entry['ratio_vs_ref']['median'] == pytest.approx(expected[1])
        medians = {rt: sorted(times[row['name']][rt])[1] for rt in ('eager', *EXPORTED_RUNTIMES)}
        assert row['best_runtime'] == min(medians, key=medians.get)
    meta = dict(cpu='cpu', isa='isa', logical_cpus=2, threads=1, device='cpu', torch='t',
                mmdet='d', mmcv='c', date='now', batch_size=1, input_size=[17, 23],
                repeats_note='3', warmup=1)
    table = markdown(rows, [dict(name='toy', note='')], [], meta)
    assert ('| model | eager ms (format) | ONNX Runtime ms | x ref [p10-p90] | OpenVINO ms | '
            'x ref [p10-p90] | torch.compile ms | x ref [p10-p90] | best runtime |') in table


def test_runtime_installed_and_unavailable(monkeypatch):
    from rfcr.deploy import runtime
    assert bench.runtimes_asked(['installed']) == runtime.available_runtimes()
    assert bench.runtimes_asked(['openvino', 'installed'])[0] == 'openvino'
    monkeypatch.setattr(runtime, 'available_runtimes', lambda: ('onnxruntime', ))
    with pytest.raises(SystemExit, match=r"--runtime openvino needs the openvino and onnx "
                                         r"packages \(pip install 'rfcr\[deploy\]'\); this "
                                         r"environment runs \['onnxruntime'\]"):
        bench.run(['--suite', 'necks', '--runtime', 'openvino'] + TINY)


def test_models_fp32_vs_another_file_per_runtime(tmp_path, capsys):
    from rfcr.deploy.export import OnnxWrapper, export_onnx, export_openvino
    x = torch.rand(1, 3, 32, 32)
    small = OnnxWrapper(torch.nn.Conv2d(3, 8, 3, padding=1))
    large = OnnxWrapper(torch.nn.Conv2d(3, 64, 3, padding=1))
    export_onnx(small, (x, ), tmp_path / 'small.onnx')
    export_onnx(large, (x, ), tmp_path / 'large.onnx')
    export_openvino(small, (x, ), tmp_path / 'small.xml')
    files = [str(tmp_path / f) for f in ('small.onnx', 'large.onnx', 'small.xml')]
    out = tmp_path / 'out'
    result = bench.run(['--models', *files, '--input-size', '32', '--runtime', 'onnxruntime',
                        'openvino', '--out-dir', str(out)] + TINY[2:])
    names = [r['name'] for r in result['rows']]
    assert names == ['small.onnx (onnxruntime)', 'small.onnx (openvino)',
                     'large.onnx (onnxruntime)', 'large.onnx (openvino)', 'small.xml (openvino)']
    refs = {r['name']: r['ref'] for r in result['rows']}
    assert refs['large.onnx (openvino)'] == refs['small.xml (openvino)'] == 'small.onnx (openvino)'
    assert refs['large.onnx (onnxruntime)'] == 'small.onnx (onnxruntime)'
    assert all(_finite(r['ratio_vs_ref']['median']) for r in result['rows'])
    assert sorted(p.name for p in out.iterdir()) == ['models.json', 'models.md']
    assert '| large.onnx | OpenVINO |' in capsys.readouterr().out
    # A static graph refuses another input size; a missing file is named.
    with pytest.raises(SystemExit, match=r"input 'input0' has shape 1x3x32x32, got 1x3x64x64"):
        bench.run(['--models', files[0], '--input-size', '64', '--out-dir', str(out)] + TINY[2:])
    with pytest.raises(SystemExit, match=r'--models: .*nope.onnx: no such file'):
        bench.run(['--models', str(tmp_path / 'nope.onnx'), '--out-dir', str(out)] + TINY[2:])
