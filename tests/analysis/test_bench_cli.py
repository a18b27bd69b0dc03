"""rfcr-bench end to end on tiny inputs with few rounds: the outputs and their schema.
Latency values are only checked to be positive and finite, never compared."""
import csv
import dataclasses
import json
import math
import sys
from pathlib import Path

import pytest
import torch

from rfcr.analysis.benchmark import BenchRow, Candidate, Group, Suite, Target, finite_ratios
from rfcr.tools import bench

TINY = ['--input-size', '64', '--repeats', '2', '--warmup', '1', '--threads', '1',
        '--no-progress']
SUITE_FILE = bench.REPO / 'benchmarks' / 'suite.py'  # rfcr-bench needs it named
SUITE = ['--suite', str(SUITE_FILE)]
NECKS = ['RFCR', 'seed-port RFCR', 'FPN 96', 'PAFPN 96']
BENCHMARK_CONFIGS = sorted((bench.REPO / 'benchmarks/configs').rglob('*.py'))


def _finite(x):
    return isinstance(x, (int, float)) and math.isfinite(x) and x > 0


def _check_rows(rows):
    assert rows, 'no rows'
    for row in rows:
        assert row.error is None, row.error
        assert row.memory_format in ('contiguous', 'channels_last')
        assert set(row.latency_ms_by_format) == {'contiguous', 'channels_last'}
        assert _finite(row.channels_last_speedup["median"])
        for stats in [row.latency_ms, row.ratio_vs_ref]:
            assert all(_finite(stats[k]) for k in ('median', 'p10', 'p90'))
        assert row.latency_ms['n'] == 2
        assert _finite(row.params['total']) and _finite(row.macs['total'])
        assert _finite(row.peak_memory_mib)
        assert row.unsupported_ops == {}


def _read_outputs(out_dir):
    """bench.json's rows as BenchRows, and bench.csv's columns and records."""
    rows = [BenchRow(**r) for r in json.loads((out_dir / 'bench.json').read_text())['rows']]
    with open(out_dir / 'bench.csv') as f:
        reader = csv.DictReader(f)
        return rows, reader.fieldnames, list(reader)


def test_necks_suite(tmp_path, capsys):
    result = bench.run(SUITE + ['--groups', 'necks', '--out-dir', str(tmp_path)] + TINY)
    rows = result['rows']
    assert [r.name for r in rows] == NECKS
    _check_rows(rows)
    rfcr = rows[0]
    assert rfcr.ratio_vs_ref['median'] == 1.0 and rfcr.ref == 'RFCR'
    assert result['meta']['finite_ratios'] is True
    assert result['meta']['input_size'] == [64, 64] and result['meta']['threads'] == 1
    assert result['meta']['isa'].endswith(f'ATen kernels: {torch.backends.cpu.get_cpu_capability()}')
    assert result['targets'] == []  # the necks group has none
    timings = result['timings_s']['necks']['RFCR']
    assert set(timings) == {'contiguous', 'channels_last', 'eager'}
    assert timings['eager'] == timings[rfcr.memory_format]

    files = {p.name for p in Path(tmp_path).iterdir()}
    assert files == {'bench.json', 'bench.csv', 'bench.md', 'bench.png'}
    json_rows, columns, records = _read_outputs(tmp_path)
    assert json_rows == rows  # bench.json reads back into the same typed rows
    # One CSV record per row; nested entries flattened, each field in field order.
    assert [r['name'] for r in records] == NECKS
    for column in ('params_total', 'macs_total', 'latency_ms_median', 'latency_ms_p90',
                   'latency_ms_by_format_channels_last_median', 'ratio_vs_ref_median',
                   'peak_memory_mib', 'best_runtime'):
        assert column in columns, column
    assert 'error' not in columns and not any(c.startswith('runtimes_') for c in columns)
    order = [f.name for f in dataclasses.fields(BenchRow)]
    owners = [max((f for f in order if c == f or c.startswith(f'{f}_')), key=len)
              for c in columns]
    assert owners == sorted(owners, key=order.index)
    for row, record in zip(rows, records):
        assert float(record['latency_ms_median']) == row.latency_ms['median']
        assert int(record['params_total']) == row.params['total']
    out = capsys.readouterr().out
    assert '| model | params M' in out and 'MACs: multiply-accumulates' in out
    assert result['meta']['isa'] in out  # the CPU and its ISA under every table


def test_user_configs_against_a_baseline(tmp_path):
    configs = ['mmdet::yolo/yolov3_mobilenetv2_8xb24-320-300e_coco.py',
               'configs/swapin/yolov3_mobilenetv2-trunc_rfcr_8xb24-320-300e_coco.py']
    result = bench.run(['--configs', *configs, '--out-dir', str(tmp_path), '--no-plot',
                         '--no-peak-memory', '--memory-format', 'channels_last'] + TINY)
    base, swap = result['rows']
    assert base.name == 'yolov3_mobilenetv2_8xb24-320-300e_coco' == swap.ref
    for row in (base, swap):
        assert set(row.params) == {'backbone', 'neck', 'head', 'total'}
        assert set(row.macs) == {'backbone', 'neck', 'head', 'total'}
        assert row.memory_format == 'channels_last' and row.peak_memory_mib is None
        assert _finite(row.ratio_vs_ref['median'])
    assert swap.params['backbone'] < base.params['backbone']  # truncated
    assert swap.macs['backbone'] < base.macs['backbone']
    assert result['targets'] == []
    assert result['meta']['finite_ratios'] is True


def test_a_failing_config_is_reported_not_fatal(tmp_path):
    configs = ['mmdet::yolo/yolov3_mobilenetv2_8xb24-320-300e_coco.py', 'mmdet::yolo/nope.py']
    result = bench.run(['--configs', *configs, '--out-dir', str(tmp_path), '--no-plot',
                         '--no-peak-memory'] + TINY)
    ok, missing = result['rows']
    assert _finite(ok.latency_ms['median'])
    assert missing.error.startswith('FileNotFoundError: mmdet::yolo/nope.py is not in')
    assert missing.latency_ms is None
    _, columns, records = _read_outputs(tmp_path)
    assert [r['error'] for r in records] == ['', missing.error]
    result = bench.run(['--configs', configs[0], '--out-dir', str(tmp_path), '--no-plot',
                         '--cfg-options', 'model.neck.in_channels=[1,2,3]'] + TINY)
    (row, ) = result['rows']
    assert row.error is not None and row.latency_ms is None
    assert result['meta']['finite_ratios'] is False  # nothing measured: nothing vouched for


def test_finite_ratios_needs_a_measured_row_and_refuses_nan():
    def row(median):
        return BenchRow('g', 'a', 'toy', '', 'a', ratio_vs_ref=None if median is None else
                        dict(median=median, p10=median, p90=median))
    assert finite_ratios([row(1.0), row(0.5)]) is True
    assert finite_ratios([row(1.0), row(None)]) is True  # a failed row has no ratio
    assert finite_ratios([]) is False and finite_ratios([row(None)]) is False
    assert finite_ratios([row(1.0), row(math.nan)]) is False
    assert finite_ratios([row(1.0), row(0.0)]) is False


def test_console_entry_point_writes_the_outputs(tmp_path, capsys):
    bench.main(SUITE + ['--groups', 'necks', '--out-dir', str(tmp_path), '--no-plot',
                '--no-peak-memory'] + TINY)
    assert sorted(p.name for p in tmp_path.iterdir()) == ['bench.csv', 'bench.json', 'bench.md']
    rows, _, records = _read_outputs(tmp_path)
    assert [r.name for r in rows] == [r['name'] for r in records] == NECKS
    assert all(r.peak_memory_mib is None and _finite(r.latency_ms['median']) for r in rows)
    table = (tmp_path / 'bench.md').read_text()
    assert table.count('\n| RFCR | ') == 1 and table.strip() in capsys.readouterr().out


def test_torch_threads_are_restored(tmp_path):
    before = torch.get_num_threads()
    bench.run(SUITE + ['--groups', 'necks', '--out-dir', str(tmp_path), '--no-plot',
               '--no-peak-memory',
               '--memory-format', 'contiguous', '--input-size', '32', '--repeats', '1',
               '--warmup', '0', '--threads', str(before + 1), '--no-progress'])
    assert torch.get_num_threads() == before


def test_bad_baseline():
    with pytest.raises(ValueError, match=r'--baseline must name one of the configs'):
        bench.configs_suite(['a/b.py'], 'c', None)

def test_deploy_suite_folds_every_model_and_runs_onnxruntime(tmp_path, capsys):
    result = bench.run(SUITE + ['--groups', 'deploy', '--runtime', 'onnxruntime', '--out-dir',
                        str(tmp_path), '--no-plot', '--no-peak-memory'] + TINY)
    rows = {r.name: r for r in result['rows']}
    assert list(rows) == ['yolov3_mobilenetv2_320 (folded)', 'ssdlite_mobilenetv2 (folded)',
                          'YOLO-ReT-M0.75 (folded)', 'RFCR (folded)', 'seed-port RFCR (folded)']
    for row in rows.values():
        assert row.error is None, row.error
        assert _finite(row.ratio_vs_ref['median'])
    # YOLO-ReT's prediction convs are composed into its neck: the head runs nothing.
    yoloret = rows['YOLO-ReT-M0.75 (folded)']
    assert yoloret.macs['head'] == 0 and yoloret.params['head'] == 0
    assert rows['RFCR (folded)'].ref == 'seed-port RFCR (folded)'
    # ONNX Runtime beside eager, every row, in the same rounds (2 timings each), each row
    # against its reference on ONNX Runtime.
    for name, row in rows.items():
        assert row.runtime_errors == {}, row.runtime_errors
        ort = row.runtimes['onnxruntime']
        assert ort['latency_ms']['n'] == 2
        assert _finite(ort['speedup_vs_eager']['median'])
        assert _finite(ort['ratio_vs_ref']['median'])
        assert row.best_runtime in ('eager', 'onnxruntime')
        assert set(row.latency_ms_by_format) == {'contiguous', 'channels_last'}
        assert _finite(row.channels_last_speedup["median"])
        times = result['timings_s']['deploy']
        ref = times[row.ref]['onnxruntime']
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
    _, _, records = _read_outputs(tmp_path)
    assert len(records) == len(rows)
    assert all(_finite(float(r['runtimes_onnxruntime_speedup_vs_eager_median']))
               for r in records)


def test_default_suite_is_complete():
    suite = bench.load_suite(SUITE_FILE)
    assert [g.name for g in suite.groups] == ['ablation-M0.75', 'ablation-M1.4',
                                              'detectors-COCO', 'necks', 'deploy', 'end2end',
                                              'efficientnet', 'efficientnet-deploy']
    sources = [c.source for g in suite.groups for c in g.candidates]
    files = [s for s in sources if s.endswith('.py') and '::' not in s]
    # 10 ablation, 4 detectors, 1 deploy, 2 end2end, 6 EfficientNet-B3, the seed port twice
    assert len(files) == 25 and all((bench.REPO / s).is_file() for s in files)
    m14 = {c.source for c in suite.groups[1].candidates}  # benchmarks/configs, all of them
    assert m14 == {str(p.relative_to(bench.REPO)) for p in BENCHMARK_CONFIGS}
    names = [t.name for t in suite.targets_on([])]
    assert {t.runtime for t in suite.targets_on([])} == {'eager'}
    for width in ('0.75', '1.4'):  # RFCR's cost and truncation's saving, at both widths
        assert sum(f'MobileNetV2-x{width}' in n for n in names) == 2
    assert sum(n.startswith('folded: YOLO-ReT-M0.75') for n in names) == 2
    with_ort = suite.targets_on(['onnxruntime', 'openvino'])
    assert [t.runtime for t in with_ort] == (['eager'] * len(names) + ['onnxruntime']
                                             * len(names) + ['openvino'] * len(names)
                                             + ['best'] * 2 + ['onnxruntime', 'openvino'])
    assert [t.name for t in with_ort[:-4]] == names * 3
    assert [(t.b, t.op, t.threshold) for t in with_ort[-4:-2]] == [
        ('ssdlite_mobilenetv2 (folded)', '<', 1.0), ('yolov3_mobilenetv2_320 (folded)', '<=', 0.7)]
    # End to end vs model only, the same model, on the graph runtimes only.
    assert {(t.group, t.a, t.b, t.op, t.threshold) for t in with_ort[-2:]} == {
        ('end2end', 'YOLO-ReT-M0.75 end to end (folded)', 'YOLO-ReT-M0.75 model only (folded)',
         '<=', 1.25)}
    assert suite.select(['end2end']).targets_on(['ncnn', 'mnn']) == []
    necks = suite.select(['necks', 'ablation'])
    assert [g.name for g in necks.groups] == ['ablation-M0.75', 'ablation-M1.4', 'necks']
    assert [t.group for t in necks.targets] == ['ablation-M0.75'] * 2 + ['ablation-M1.4'] * 2


def test_suite_file_errors(tmp_path):
    with pytest.raises(SystemExit, match=r"--groups: no group of the suite is called 'neck' "
                                         r"or 'neck-\.\.\.'; groups: \['ablation-M0.75'"):
        bench.run(SUITE + ['--groups', 'neck'] + TINY)
    # Nothing in rfcr names the repository's suite: what to run is always given.
    with pytest.raises(SystemExit, match=r'^rfcr-bench: give what to benchmark, one of '
                                         r'--suite FILE, --configs CONFIG\.\.\. or --models '
                                         r'FILE\.\.\.; got none$'):
        bench.run(['--groups', 'necks'] + TINY)
    with pytest.raises(SystemExit, match=r'got --suite and --configs$'):
        bench.run(SUITE + ['--configs', 'a.py'] + TINY)
    with pytest.raises(SystemExit, match=r'--groups picks groups of a --suite FILE'):
        bench.run(['--configs', 'a.py', '--groups', 'necks'] + TINY)
    with pytest.raises(SystemExit, match=r'--suite .*nope.py: no such file'):
        bench.run(['--suite', str(tmp_path / 'nope.py')] + TINY)
    (tmp_path / 'empty.py').write_text('SUITES = []\n')
    with pytest.raises(ValueError, match=r"empty.py' must define SUITE, a "
                                        r"rfcr.analysis.benchmark.Suite; got NoneType"):
        bench.run(['--suite', str(tmp_path / 'empty.py')] + TINY)
    group = Group('g', 'a', [Candidate('a', 'toy', None, None)])
    with pytest.raises(ValueError, match=r"target 't': rows 'a' and 'b' must be candidates of "
                                         r"group 'g'"):
        Suite([group], [Target('t', 'g', 'a', 'b', '<', 1.0)])


def test_a_suite_file_of_ones_own(tmp_path, monkeypatch):
    """A suite beside a module of its own, run by path from another directory: its folder
    is importable while it loads, and only then."""
    (tmp_path / 'toy_net.py').write_text(
        'from torch import nn\n\ndef net(width):\n    return nn.Conv2d(3, width, 3)\n')
    (tmp_path / 'toy_suite.py').write_text(
        'from functools import partial\n'
        'from rfcr.analysis.benchmark import Candidate, Group, Suite, Target, image\n'
        'from toy_net import net\n'
        "SUITE = Suite([Group('toy', baseline='narrow', candidates=[\n"
        "    Candidate('narrow', 'toy', partial(net, 4), image),\n"
        "    Candidate('wide', 'toy', partial(net, 64), image)])],\n"
        "    [Target('wide vs narrow', 'toy', 'wide', 'narrow', '>', 0.0)])\n")
    monkeypatch.chdir(tmp_path.parent)
    out = tmp_path / 'out'
    try:
        bench.run(['--suite', f'{tmp_path.name}/toy_suite.py', '--out-dir', str(out),
                   '--no-plot', '--no-peak-memory'] + TINY)
    finally:
        sys.modules.pop('toy_net', None)
    assert str(tmp_path) not in sys.path
    result = json.loads((out / 'bench.json').read_text())
    assert [r['name'] for r in result['rows']] == ['narrow', 'wide']
    assert [r['params']['total'] for r in result['rows']] == [3 * 4 * 9 + 4, 3 * 64 * 9 + 64]
    (target, ) = result['targets']
    # 2 rounds give no interval (it takes 6 at 95 %): however clear, that is undecided.
    assert target['verdict'] == 'undecided' and _finite(target['value'])
    assert target['ci_lo'] is None and target['n'] == 2


def _times(ratio_on_eager, ratio_on_ort):
    """Synthetic per-round times of two rows, a/b = the given ratios on each runtime in
    every round (8 rounds: enough for a 95 % interval)."""
    b = [1.0, 2.0, 4.0, 3.0, 1.5, 2.5, 3.5, 1.2]
    return {'g': {'a': {'eager': [ratio_on_eager * x for x in b],
                        'onnxruntime': [ratio_on_ort * x for x in b]},
                  'b': {'eager': b, 'onnxruntime': b}}}


@pytest.mark.parametrize('runtime, op, threshold, value, verdict', [
    ('eager', '<=', 0.75, 0.7, 'met'),
    ('eager', '<', 0.65, 0.7, 'not met'),
    ('onnxruntime', '<=', 0.75, 0.9, 'not met'),
    ('onnxruntime', '>', 0.8, 0.9, 'met'),
])
def test_targets_compare_both_rows_on_one_runtime(runtime, op, threshold, value, verdict):
    target = Target('t', 'g', 'a', 'b', op, threshold, runtime=runtime)
    result = target.check(_times(0.7, 0.9))
    assert result['value'] == pytest.approx(value) and result['verdict'] == verdict
    assert result['runtime'] == runtime and result['mac_ratio'] is None
    speedup = Target('t', 'g', 'a', 'b', '>=', 1.3, speedup=True).check(_times(0.7, 0.9))
    assert speedup['value'] == pytest.approx(1 / 0.7) and speedup['verdict'] == 'met'
    missing = Target('t', 'g', 'a', 'c', '<', 1).check(_times(0.7, 0.9))
    assert missing['value'] is None and missing['verdict'] is None


@pytest.mark.parametrize('path', BENCHMARK_CONFIGS, ids=lambda p: p.name)
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
    from rfcr.deploy.runtime import available_runtimes

    EXPORTED_RUNTIMES = available_runtimes()  # every runtime this environment has
    assert {'onnxruntime', 'openvino', 'compile', 'ncnn', 'mnn'} <= set(EXPORTED_RUNTIMES)

    def image(batch, size):
        return (torch.rand(batch, 8, *size), )

    group = Group('toy', baseline='small', repeats=3, candidates=[
        Candidate('small', 'toy', lambda: nn.Conv2d(8, 8, 1), image),
        Candidate('large', 'toy', lambda: nn.Conv2d(8, 32, 3, padding=1), image)])
    settings = Settings(input_size=(17, 23), threads=1, warmup=1, peak_memory=False,
                        memory_format='contiguous', runtimes=EXPORTED_RUNTIMES)
    rows, times, rounds = run_group(group, settings)
    assert rounds['rounds'] == 3 and rounds['stopped'] == 'rounds'
    assert [r.name for r in rows] == ['small', 'large']
    for row in rows:
        assert row.runtime_errors == {}, row.runtime_errors
        assert set(row.runtimes) == set(EXPORTED_RUNTIMES)
        assert set(times[row.name]) == {'contiguous', 'eager', *EXPORTED_RUNTIMES}
        for rt, entry in row.runtimes.items():
            assert entry['latency_ms']['n'] == 3 and _finite(entry['speedup_vs_eager']['median'])
            expected = sorted(a / b for a, b in zip(times[row.name][rt], times['small'][rt]))
            assert entry['ratio_vs_ref']['median'] == pytest.approx(expected[1])
        medians = {rt: sorted(times[row.name][rt])[1] for rt in ('eager', *EXPORTED_RUNTIMES)}
        assert row.best_runtime == min(medians, key=medians.get)
    meta = dict(cpu='cpu', isa='isa', logical_cpus=2, threads=1, device='cpu', torch='t',
                mmdet='d', mmcv='c', date='now', batch_size=1, input_size=[17, 23],
                repeats_note='3', warmup=1)
    table = markdown(rows, [dict(name='toy', note='')], [], meta)
    labels = {'onnxruntime': 'ONNX Runtime', 'openvino': 'OpenVINO', 'compile': 'torch.compile',
              'ncnn': 'ncnn', 'mnn': 'MNN', 'litert': 'LiteRT'}
    assert ('| model | eager ms (format) | ' + ''.join(
        f'{labels[rt]} ms | x ref [95% CI] | ' for rt in EXPORTED_RUNTIMES)
        + 'best runtime |') in table
    # ncnn, MNN (and LiteRT) timed here give x86 numbers, and the table says so.
    arm = ', '.join(labels[rt] for rt in EXPORTED_RUNTIMES if rt in ('ncnn', 'mnn', 'litert'))
    assert arm.startswith('ncnn, MNN')
    assert (f'{arm}: runtimes made for ARM CPUs, run here on this machine\'s CPU (see the '
            'line under the tables): x86 numbers of ARM runtimes, not ARM numbers.') in table


def test_a_runtime_a_candidate_is_not_run_on():
    """``Candidate.not_on``: that runtime is not tried for that row, and the table says
    why; the other rows run there."""
    from torch import nn
    from rfcr.analysis.benchmark import Candidate, Group, Settings, num_steps, run_group
    from rfcr.analysis.report import markdown

    def image(batch, size):
        return (torch.rand(batch, 3, *size), )

    group = Group('toy', baseline='a', repeats=2, candidates=[
        Candidate('a', 'toy', lambda: nn.Conv2d(3, 4, 1), image),
        Candidate('b', 'toy', lambda: nn.Conv2d(3, 8, 1), image,
                  not_on={'onnxruntime': 'an op it lacks'})])
    settings = Settings(input_size=(8, 8), threads=1, warmup=1, peak_memory=False,
                        memory_format='contiguous', runtimes=('onnxruntime', ))
    steps = []
    rows, times, _ = run_group(group, settings, lambda msg, n: steps.append(n))
    assert sum(steps) == num_steps(group, settings) == 2 + 3 * 3
    a, b = rows
    assert set(a.runtimes) == {'onnxruntime'} and 'onnxruntime' in times['a']
    assert b.runtimes == {} and b.runtime_errors == {} and 'onnxruntime' not in times['b']
    assert b.runtimes_not_run == {'onnxruntime': 'an op it lacks'}
    meta = dict(cpu='cpu', isa='isa', logical_cpus=2, threads=1, device='cpu', torch='t',
                mmdet='d', mmcv='c', date='now', batch_size=1, input_size=[8, 8],
                repeats_note='2', warmup=1)
    table = markdown(rows, [dict(name='toy', note='')], [], meta)
    assert '| b | ' in table and '| not run: an op it lacks | - |' in table
    assert 'ARM' not in table


def test_profile_runs_on_the_timed_runners(tmp_path, monkeypatch):
    """--profile profiles the rows of an unmet target on the very runners that were
    timed: each model is built once and exported once, however many profiles follow."""
    from rfcr.deploy import runtime
    (tmp_path / 'built_net.py').write_text(
        'from torch import nn\n\nBUILT = []\n\ndef net(width):\n    BUILT.append(width)\n'
        '    return nn.Conv2d(3, width, 3)\n')
    (tmp_path / 'unmet_suite.py').write_text(
        'from functools import partial\n'
        'from rfcr.analysis.benchmark import Candidate, Group, Suite, Target, image\n'
        'from built_net import net\n'
        "SUITE = Suite([Group('toy', baseline='narrow', candidates=[\n"
        "    Candidate('narrow', 'toy', partial(net, 4), image),\n"
        "    Candidate('wide', 'toy', partial(net, 64), image)])],\n"
        "    [Target('never', 'toy', 'wide', 'narrow', '<', 0.0)])\n")
    ort = runtime.RUNTIMES['onnxruntime']
    exported = []

    def export(module, inputs, path, **options):
        exported.append(path)
        return ort.export(module, inputs, path, **options)

    monkeypatch.setitem(runtime.RUNTIMES, 'onnxruntime', dataclasses.replace(ort, export=export))
    try:
        result = bench.run(['--suite', str(tmp_path / 'unmet_suite.py'), '--runtime',
                            'onnxruntime', '--profile', '--out-dir', str(tmp_path / 'out'),
                            '--no-plot', '--no-peak-memory'] + TINY)
        built = sys.modules['built_net'].BUILT
    finally:
        sys.modules.pop('built_net', None)
    assert [(t['runtime'], t['verdict']) for t in result['targets']] == [
        ('eager', 'undecided'), ('onnxruntime', 'undecided')]  # 2 rounds: no interval
    assert [(p['name'], p['runtime']) for p in result['profiles']] == [
        ('wide', 'eager'), ('narrow', 'eager'), ('wide', 'onnxruntime'),
        ('narrow', 'onnxruntime')]
    assert all(p['nodes'] >= 1 and p['wall_ms'] > 0 for p in result['profiles'])
    assert built == [4, 64] and len(exported) == 2


@pytest.mark.slow
def test_end2end_group_on_the_graph_runtimes(tmp_path, capsys):
    """The end2end group: model only and end to end of one model, timed together on
    eager, ONNX Runtime and OpenVINO, its target on both; not run where NMS is not."""
    result = bench.run(SUITE + ['--groups', 'end2end', '--runtime', 'onnxruntime', 'openvino',
                                '--out-dir', str(tmp_path), '--no-plot', '--no-peak-memory',
                                '--memory-format', 'contiguous'] + TINY)
    model, end2end = result['rows']
    assert (model.name, end2end.name) == ('YOLO-ReT-M0.75 model only (folded)',
                                          'YOLO-ReT-M0.75 end to end (folded)')
    for row in (model, end2end):
        assert row.error is None and row.runtime_errors == {}, (row.error, row.runtime_errors)
        assert set(row.runtimes) == {'onnxruntime', 'openvino'}
        assert row.ref == model.name
    assert end2end.params['total'] == model.params['total']  # the same model inside
    assert {t['runtime']: _finite(t['value']) for t in result['targets']} == {
        'onnxruntime': True, 'openvino': True}
    assert all(t['name'] == 'end to end adds <= 25% to model-only at 320'
               for t in result['targets'])
    assert 'end to end adds <= 25% to model-only at 320 | ONNX Runtime |' in capsys.readouterr().out


def test_runtime_installed_and_unavailable(monkeypatch):
    from rfcr.deploy import runtime
    assert bench.runtimes_asked(['installed']) == runtime.available_runtimes()
    assert bench.runtimes_asked(['openvino', 'installed'])[0] == 'openvino'
    monkeypatch.setattr(runtime, 'available_runtimes', lambda: ('onnxruntime', ))
    with pytest.raises(SystemExit, match=r"--runtime openvino needs the openvino and onnx "
                                         r"packages \(pip install 'rfcr\[deploy\]'\); this "
                                         r"environment runs \['onnxruntime'\]"):
        bench.run(SUITE + ['--groups', 'necks', '--runtime', 'openvino'] + TINY)


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
