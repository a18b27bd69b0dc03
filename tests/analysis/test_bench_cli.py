"""rfcr-bench end to end on tiny inputs with few rounds: the outputs and their schema.
Latency values are only checked to be positive and finite, never compared."""
import csv
import json
import math
from pathlib import Path

import pytest

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
    (target, ) = result['targets']
    assert target['measure'] == 'speed-up' and _finite(target['value'])
    assert target['met'] in (True, False)
    assert set(result['timings_s']['necks']['RFCR']) == {'contiguous', 'channels_last'}

    files = {p.name for p in Path(tmp_path).iterdir()}
    assert files == {'bench.json', 'bench.csv', 'bench.md', 'bench.png'}
    assert json.loads((tmp_path / 'bench.json').read_text())['rows'][0]['name'] == 'RFCR'
    with open(tmp_path / 'bench.csv') as f:
        reader = csv.DictReader(f)
        assert tuple(reader.fieldnames) == CSV_FIELDS
        assert [r['name'] for r in reader] == names
    out = capsys.readouterr().out
    assert '| model | params M' in out and 'RFCR >= 1.3x faster than the seed port' in out
    assert 'MACs: multiply-accumulates' in out


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
                          'YOLO-ReT-M0.75 (folded)', 'RFCR (folded)', 'seed-port RFCR']
    for row in rows.values():
        assert 'error' not in row, row.get('error')
        assert _finite(row['ratio_vs_ref']['median'])
    # YOLO-ReT's prediction convs are composed into its neck: the head runs nothing.
    yoloret = rows['YOLO-ReT-M0.75 (folded)']
    assert yoloret['macs']['head'] == 0 and yoloret['params']['head'] == 0
    assert rows['RFCR (folded)']['ref'] == 'seed-port RFCR'
    # ONNX Runtime beside eager, every row, in the same rounds (2 timings each).
    for row in rows.values():
        assert 'onnxruntime_error' not in row, row.get('onnxruntime_error')
        assert row['onnxruntime']['latency_ms']['n'] == 2
        assert _finite(row['onnxruntime']['speedup_vs_eager']['median'])
        assert set(row['latency_ms_by_format']) == {'contiguous', 'channels_last'}
        assert _finite(row['channels_last_speedup'])
    names = [t['name'] for t in result['targets']]
    assert names[2].startswith('folded: RFCR') and 'ONNX Runtime' in names[3]
    assert _finite(result['targets'][3]['value'])
    assert 'ORT speed-up vs eager' in capsys.readouterr().out
    with open(tmp_path / 'bench.csv') as f:
        assert all(_finite(float(r['onnxruntime_speedup_vs_eager'])) for r in csv.DictReader(f))


def test_default_suite_is_complete():
    suite = bench.default_suite()
    assert [g.name for g in suite.groups] == ['ablation-M0.75', 'ablation-M1.4',
                                              'detectors-COCO', 'necks', 'deploy']
    for group in suite.groups:
        for cand in group.candidates:
            if cand.source.endswith('.py') and '::' not in cand.source:
                assert (bench.REPO / cand.source).is_file(), cand.source
    assert len(suite.targets) == 8
    assert all(g.name in {t.group for t in suite.targets} for g in suite.groups)


@pytest.mark.parametrize('path', sorted(
    (bench.REPO / 'benchmarks/configs').rglob('*.py')), ids=lambda p: p.name)
def test_benchmark_configs_build_and_run(path):
    import torch
    from rfcr.analysis.build import build_from_config
    from rfcr.models.utils import check_channels
    model = build_from_config(str(path))
    check_channels(model, input_size=64)
    with torch.no_grad():
        (maps, ) = model(torch.rand(1, 3, 64, 96))
    assert [m.shape[1] for m in maps] == [75, 75, 75]
