"""The cross-check of rfcr's OpenVINO ratios by OpenVINO's own benchmark_app: its report
parser and the agreement rule on known values, its errors, and the check itself on two
small convnets (rfcr's CI of their latency ratio must hold benchmark_app's, widened 5 %)."""
import math
import statistics

import pytest
import torch
from torch import nn

from rfcr.analysis.crosscheck import (agrees, benchmark_app_latency, crosscheck,
                                      parse_compiled_properties, parse_report,
                                      run_benchmark_app, widened)
from rfcr.analysis.latency import RatioCI, interleaved_timings, ratio_ci

# What benchmark_app 2026.4 writes with -report_type no_counters -json_stats (trimmed).
REPORT = {
    'cmd_options': {'-m': 'small.xml', '-d': 'CPU', '-hint': 'latency', '-t': '2'},
    'configuration_setup': {'API': 'sync', 'number of parallel infer requests': '1'},
    'execution_results': {'read model time (ms)': '8.50', 'compile model time (ms)': '41.37',
                          'first inference time (ms)': '2.86',
                          'total execution time (ms)': '2000.30',
                          'total number of iterations': '2615', 'latency (ms)': '0.73',
                          'avg latency': '0.76', 'min latency': '0.68', 'max latency': '4.97',
                          'throughput': '1307.30'}}

STDOUT = """\
[Step 8/11] Querying optimal runtime parameters
[ INFO ] Model:
[ INFO ]   NETWORK_NAME: onnx_Frontend_IR
[ INFO ]   NUM_STREAMS: 1
[ INFO ]   INFERENCE_NUM_THREADS: 1
[ INFO ]   INFERENCE_PRECISION_HINT: <Type: 'float32'>
[ INFO ]   PERFORMANCE_HINT: LATENCY
[ INFO ]   CPU:
[ INFO ]     NUM_STREAMS: 4
[ INFO ]   ENABLE_CPU_PINNING: True
[Step 9/11] Creating infer requests and preparing input tensors
[ INFO ]   NUM_STREAMS: 7
"""


def test_parse_report_reads_benchmark_apps_json():
    assert parse_report(REPORT) == dict(median_ms=0.73, average_ms=0.76, min_ms=0.68,
                                        max_ms=4.97, iterations=2615, duration_ms=2000.30)
    broken = {'execution_results': dict(REPORT['execution_results'])}
    del broken['execution_results']['latency (ms)']
    with pytest.raises(ValueError, match=r"execution_results has no 'latency \(ms\)' "
                                         r"\(expected .*found \['avg latency'"):
        parse_report(broken)
    broken['execution_results']['latency (ms)'] = 'n/a'
    with pytest.raises(ValueError, match=r"'latency \(ms\)' must be a number, got 'n/a'"):
        parse_report(broken)
    with pytest.raises(ValueError, match=r'expected an "execution_results" section, found '
                                         r"\['cmd_options'\]"):
        parse_report({'cmd_options': {}})


def test_parse_compiled_properties_reads_step_8_only():
    props = parse_compiled_properties(STDOUT)
    assert props == {'NETWORK_NAME': 'onnx_Frontend_IR', 'NUM_STREAMS': '1',
                     'INFERENCE_NUM_THREADS': '1',
                     'INFERENCE_PRECISION_HINT': "<Type: 'float32'>",
                     'PERFORMANCE_HINT': 'LATENCY', 'ENABLE_CPU_PINNING': 'True'}
    with pytest.raises(ValueError, match=r"no '\[ INFO \] Model:' line .* printed 2 lines"):
        parse_compiled_properties('[Step 1/11] Parsing\n[ ERROR ] boom\n')


def test_agrees_widens_the_interval_by_a_factor():
    ci = RatioCI(median=2.0, lo=1.9, hi=2.1, p10=1.8, p90=2.2, n=100)
    lo, hi = widened(ci, 0.05)
    assert (lo, hi) == (pytest.approx(1.9 / 1.05), pytest.approx(2.1 * 1.05))
    assert agrees(2.0, ci) and agrees(2.2, ci) and agrees(1.81, ci) and agrees(hi, ci)
    assert not agrees(2.21, ci) and not agrees(1.80, ci)
    assert not agrees(2.15, ci, widen=0.0) and agrees(2.1, ci, widen=0.0)
    inverse = RatioCI(0.5, 1 / 2.1, 1 / 1.9, 1 / 2.2, 1 / 1.8, 100)  # b / a: same verdicts
    for r in (2.0, 2.2, 1.81, 2.21, 1.80):
        assert agrees(1 / r, inverse) == agrees(r, ci)
    with pytest.raises(ValueError, match=r'ci must have a finite, positive interval .* '
                                         r'lo=-inf, hi=inf over n=5 rounds'):
        agrees(2.0, RatioCI(2.0, -math.inf, math.inf, 1.9, 2.1, 5))
    with pytest.raises(ValueError, match=r'widen must be a finite number >= 0 .*got -0.1'):
        agrees(2.0, ci, widen=-0.1)
    with pytest.raises(ValueError, match=r'bench_ratio must be a finite number > 0, got 0'):
        agrees(0, ci)


def test_missing_or_wrong_files_fail_before_anything_runs(tmp_path):
    absent = tmp_path / 'absent.xml'
    with pytest.raises(FileNotFoundError, match=rf"path: no such file '{absent}'"):
        benchmark_app_latency(absent, threads=1)
    with pytest.raises(ValueError, match=r"path must be an OpenVINO IR or ONNX file \(suffix "
                                         r"\.xml or \.onnx\), got '.*model\.pt'"):
        benchmark_app_latency(tmp_path / 'model.pt', threads=1)
    (tmp_path / 'weightless.xml').write_text('<net/>')
    with pytest.raises(FileNotFoundError, match=r"has no weights file '.*weightless\.bin'"):
        benchmark_app_latency(tmp_path / 'weightless.xml', threads=1)
    (tmp_path / 'weightless.bin').write_bytes(b'')  # now a file pair, but b is absent
    with pytest.raises(FileNotFoundError, match=r"pairs\[0\] path_b: no such file"):
        crosscheck([('a', tmp_path / 'weightless.xml', 'b', absent)], threads=1)
    with pytest.raises(ValueError, match=r'runs must be an even int >= 2 .*got 3'):
        crosscheck([], threads=1, runs=3)


def test_benchmark_app_failure_names_the_reason(tmp_path):
    pytest.importorskip('openvino')
    bad = tmp_path / 'bad.xml'
    bad.write_text('not an IR')
    (tmp_path / 'bad.bin').write_bytes(b'')
    with pytest.raises(RuntimeError, match=r'benchmark_app failed \(exit status 1\): '
                                           r'.*\n  command: .*benchmark_app.* -m .*bad\.xml'):
        run_benchmark_app(['-m', bad, '-d', 'CPU', '-t', 1])
    with pytest.raises(RuntimeError, match=r'benchmark_app failed \(exit status 2\): .*'
                                           r'argument -t.*invalid'):
        run_benchmark_app(['-m', bad, '-t', 0])


def _convnet(depth: int) -> nn.Module:
    """3x3 convolutions of 64 channels (at 128x128: ~6 ms each at one thread) after a
    3-channel stem: few nodes (quick to export), a 64-value output (little to copy)."""
    layers = [nn.Conv2d(3, 64, 3, padding=1), nn.ReLU()]
    for _ in range(depth):
        layers += [nn.Conv2d(64, 64, 3, padding=1), nn.ReLU()]
    return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten()).eval()


ATTEMPTS = 3


def test_benchmark_apps_ratio_lies_within_rfcrs_ci(tmp_path):
    """rfcr's CI of the latency ratio of two convnets (~12 and ~24 ms at one thread, more
    under load) holds benchmark_app's ratio, widened 5 %. Models this long, because rfcr's
    wall clock spans ~0.3-0.4 ms a call that benchmark_app's latency does not (Python's
    call and data passing), which pulls rfcr's ratio toward 1: here by 1-4 %, which the
    5 % still covers; on 1-2 ms models it would be ~10 %.

    Up to :data:`ATTEMPTS` fresh measurements (rfcr's rounds, then benchmark_app's runs):
    on a shared machine a change of load can hit one side of benchmark_app's
    seconds-long runs only, while what the check is for (settings that differ, a parse
    or unit error, a and b swapped) shows in every attempt."""
    pytest.importorskip('openvino')
    from rfcr.deploy.export import OnnxWrapper
    from rfcr.deploy.runtime import get_runtime

    x = torch.rand(1, 3, 128, 128)
    runners = {name: get_runtime('openvino').runner(
                   OnnxWrapper(_convnet(depth), lambda m, xs: m(*xs)), (x, ), threads=1,
                   path=tmp_path / f'{name}.xml')
               for name, depth in (('large', 4), ('small', 2))}
    assert all(r.model.path.endswith('.xml') and r.model.threads == 1
               for r in runners.values())
    seen = []
    for _ in range(ATTEMPTS):
        times = interleaved_timings(runners, repeats=120, warmup=3)
        ci = ratio_ci(times['large'], times['small'])
        [check] = crosscheck([('large', runners['large'].model.path,
                               'small', runners['small'].model.path)], threads=1, seconds=1)
        assert len(check['runs_a']) == len(check['runs_b']) == len(check['run_ratios']) == 4
        assert check['ratio'] == statistics.median(check['run_ratios'])
        assert all(r['properties']['INFERENCE_NUM_THREADS'] == '1'
                   and r['properties']['NUM_STREAMS'] == '1'
                   and r['properties']['PERFORMANCE_HINT'] == 'LATENCY'
                   for r in check['runs_a'] + check['runs_b'])
        assert check['ratio'] > 1.5, check['run_ratios']  # models that clearly differ
        lo, hi = widened(ci)
        seen.append(f"rfcr {ci.median:.3f} [{ci.lo:.3f}, {ci.hi:.3f}] widened to "
                    f"[{lo:.3f}, {hi:.3f}], benchmark_app {check['ratio']:.3f} (couples "
                    f"{', '.join(f'{r:.3f}' for r in check['run_ratios'])}); medians ms: "
                    f"rfcr {1e3 * statistics.median(times['large']):.2f} / "
                    f"{1e3 * statistics.median(times['small']):.2f}, benchmark_app "
                    f"{check['median_ms_a']:.2f} / {check['median_ms_b']:.2f}")
        print(seen[-1])
        # An interval narrow enough to test something (+-8 %, +-13 % widened: far from a
        # ratio of 1 or 1 / 1.9), and benchmark_app's ratio in it.
        if ci.half_width < 0.08 and agrees(check['ratio'], ci):
            break
    else:
        pytest.fail(f"in all {ATTEMPTS} attempts, rfcr's CI of large/small was wider than "
                    "+-8 % or, widened 5 %, did not hold benchmark_app's ratio:\n"
                    + '\n'.join(seen))
