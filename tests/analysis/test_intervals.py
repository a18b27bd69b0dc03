"""Confidence intervals, verdicts and adaptive rounds of rfcr-bench, on synthetic timings
with a known answer (no timing is asserted: speed stays in the benchmark)."""
import math
import random

import pytest
from torch import nn

from rfcr.analysis.benchmark import (MIN_ROUNDS, Candidate, Group, Settings, Target,
                                     run_group, verdict, watched_ratios)
from rfcr.analysis.latency import interleaved_timings, median_ci_ranks, ratio_ci
from rfcr.tools import bench


def _rounds(true_ratio, n, noise=0.15, seed=0):
    """Per-round times of two rows whose per-round ratio is ``true_ratio`` times
    log-normal noise (median 1): the true median ratio is ``true_ratio``. Each round's
    base time drifts too, as a loaded machine's does; the ratio does not see it."""
    rng = random.Random(seed)
    b = [rng.uniform(5e-3, 20e-3) for _ in range(n)]
    a = [true_ratio * x * math.exp(rng.gauss(0, noise)) for x in b]
    return a, b


def test_ranks_are_the_binomial_order_statistics():
    # n = 6: [min, max] covers the median with 1 - 2/64 = 96.9 %; n = 5 cannot reach 95 %.
    assert median_ci_ranks(5) is None and median_ci_ranks(6) == (0, 5)
    for n in (6, 10, 30, 100, 1000):
        lo, hi = median_ci_ranks(n)
        k = lo + 1  # 1-based rank of the lower bound
        coverage = 1 - 2 * sum(math.comb(n, i) for i in range(k)) / 2 ** n
        wider = 1 - 2 * sum(math.comb(n, i) for i in range(k + 1)) / 2 ** n
        assert hi == n - 1 - lo and coverage >= 0.95 > wider, n
    assert median_ci_ranks(20, 0.5)[1] - median_ci_ranks(20, 0.5)[0] < (
        median_ci_ranks(20, 0.99)[1] - median_ci_ranks(20, 0.99)[0])
    with pytest.raises(ValueError, match='confidence must be in'):
        median_ci_ranks(10, 1.5)


def test_the_interval_covers_the_true_ratio_95_percent_of_the_time():
    trials, n = 1000, 30
    covered = 0
    for seed in range(trials):
        ci = ratio_ci(*_rounds(0.8, n, seed=seed))
        covered += ci.lo <= 0.8 <= ci.hi
    # exact coverage at n = 30 is 95.7 %; 1000 trials: +-1.3 % (2 sigma)
    assert 0.935 <= covered / trials <= 0.98


def test_the_interval_narrows_as_rounds_grow_and_the_spread_does_not():
    cis = [ratio_ci(*_rounds(0.8, n, seed=1)) for n in (10, 100, 1000)]
    widths = [ci.half_width for ci in cis]
    assert widths[0] > widths[1] > widths[2] and widths[2] < 0.3 * widths[0]
    spreads = [ci.p90 / ci.p10 for ci in cis]
    assert max(spreads) < 1.5 * min(spreads)  # the machine's noise stays what it is
    assert all(ci.lo <= ci.median <= ci.hi for ci in cis)


@pytest.mark.parametrize('threshold, expected', [
    (0.85, 'met'),  # the true 0.80 is clearly below
    (0.75, 'not met'),  # clearly above
    (0.80, 'undecided'),  # on the threshold: the interval holds it
])
def test_verdicts_on_a_known_ratio(threshold, expected):
    a, b = _rounds(0.8, 400, seed=2)
    ci = ratio_ci(a, b)
    assert verdict(ci.lo, ci.hi, '<=', threshold) == expected
    times = {'g': {'a': {'eager': a}, 'b': {'eager': b}}}
    assert Target('t', 'g', 'a', 'b', '<=', threshold).check(times)['verdict'] == expected
    # A speed-up is the same claim seen from the other side.
    speedup = Target('t', 'g', 'a', 'b', '>=', 1 / threshold, speedup=True).check(times)
    assert speedup['verdict'] == expected


def test_few_rounds_are_undecided_however_clear():
    a, b = _rounds(0.5, 5, noise=0.01)
    assert ratio_ci(a, b).as_dict()['ci_lo'] is None
    result = Target('t', 'g', 'a', 'b', '<=', 0.75).check({'g': {'a': {'eager': a},
                                                                  'b': {'eager': b}}})
    assert result['value'] == pytest.approx(0.5, rel=0.05) and result['verdict'] == 'undecided'


def test_verdict_edges_and_bad_op():
    assert verdict(0.9, 1.0, '<', 1.0) == 'undecided' and verdict(0.9, 0.99, '<', 1.0) == 'met'
    assert verdict(1.0, 1.2, '<', 1.0) == 'not met' and verdict(1.0, 1.2, '>=', 1.0) == 'met'
    assert verdict(-math.inf, math.inf, '>', 0.0) == 'undecided'
    with pytest.raises(ValueError, match="op must be one of"):
        verdict(0.9, 1.0, '=', 1.0)
    with pytest.raises(ValueError, match="op must be one of"):
        Target('t', 'g', 'a', 'b', '==', 1.0)


def test_an_arithmetically_out_of_reach_claim_is_judged_at_the_mac_ratio():
    """Truncation removes 16 % of the MACs: <= 0.75 cannot be reached by arithmetic, so
    it is judged at the MAC ratio + 0.03; a reachable threshold stays the paper's."""
    a, b = _rounds(0.86, 400, noise=0.02, seed=3)
    times = {'g': {'a': {'eager': a}, 'b': {'eager': b}}}
    macs = {'g': {'a': 840, 'b': 1000}}
    out_of_reach = Target('t', 'g', 'a', 'b', '<=', 0.75, mac_margin=0.03).check(times, macs)
    assert out_of_reach['mac_ratio'] == pytest.approx(0.84) and out_of_reach['restated']
    assert out_of_reach['threshold'] == pytest.approx(0.87)
    assert out_of_reach['paper_threshold'] == 0.75 and out_of_reach['verdict'] == 'met'
    reachable = Target('t', 'g', 'a', 'b', '<=', 0.9, mac_margin=0.03).check(times, macs)
    assert not reachable['restated'] and reachable['threshold'] == 0.9
    plain = Target('t', 'g', 'a', 'b', '<=', 0.75).check(times, macs)  # no margin: as stated
    assert plain['threshold'] == 0.75 and plain['verdict'] == 'not met'
    speedup = Target('t', 'g', 'a', 'b', '>=', 1 / 0.75, speedup=True,
                     mac_margin=0.03).check(times, macs)
    assert speedup['mac_ratio'] == pytest.approx(1 / 0.84) and speedup['restated']
    assert speedup['threshold'] == pytest.approx(1 / 0.84 - 0.03)


def test_a_claim_needing_an_isa_this_cpu_lacks_is_not_applicable():
    a, b = _rounds(0.5, 50, seed=4)
    times = {'g': {'a': {'eager': a}, 'b': {'eager': b}}}
    result = Target('int8', 'g', 'a', 'b', '<=', 0.8, isa=('no_such_flag', )).check(times)
    assert result['verdict'] == 'not applicable here' and 'no_such_flag' in result['why']
    assert result['value'] == pytest.approx(0.5, rel=0.1)  # measured all the same


def test_watched_ratios_are_the_tables_and_the_targets():
    a, b = _rounds(0.8, 20, seed=5)
    group = Group('g', 'b', [Candidate('a', 'toy', None, None),
                             Candidate('b', 'toy', None, None)])
    times = {'a': {'contiguous': a, 'channels_last': b, 'eager': b, 'onnxruntime': a},
             'b': {'contiguous': b, 'channels_last': b, 'eager': b, 'onnxruntime': b}}
    watched = watched_ratios(group, times, [Target('t', 'g', 'a', 'b', '<', 1.0,
                                                   runtime='onnxruntime')])
    assert set(watched) == {'a / b (eager)', 'a / b (onnxruntime)', 'a channels_last gain',
                            'b channels_last gain', 'target: t (onnxruntime)'}
    assert watched['target: t (onnxruntime)'] == ratio_ci(a, b)


def test_interleaved_timings_stop_when_told():
    seen = []

    def stop(times, done):
        seen.append((done, len(times['x'])))
        return done == 4
    times = interleaved_timings({'x': lambda: None, 'y': lambda: None}, repeats=100,
                                warmup=0, stop=stop)
    assert len(times['x']) == len(times['y']) == 4 and seen[-1] == (4, 4)


def _toy_group():
    def image(batch, size):
        import torch
        return (torch.rand(batch, 4, *size), )
    return Group('toy', baseline='a', candidates=[
        Candidate('a', 'toy', lambda: nn.Conv2d(4, 4, 1), image),
        Candidate('b', 'toy', lambda: nn.Conv2d(4, 4, 1), image)])


def test_adaptive_rounds_stop_at_the_precision_asked():
    """Two identical models, a loose precision: the intervals get there after a handful
    of rounds, and the group records how many it took and why it stopped."""
    settings = Settings(input_size=(8, 8), threads=1, warmup=1, peak_memory=False,
                        memory_format='contiguous', precision=0.5, max_time=120)
    rows, times, rounds = run_group(_toy_group(), settings)
    assert rounds['stopped'] == 'precision' and rounds['rounds'] >= MIN_ROUNDS
    assert rounds['widest']['half_width'] <= 0.5 and rounds['widest']['ratio'] == 'b / a (eager)'
    assert len(times['a']['eager']) == rounds['rounds'] == rows[1].ratio_vs_ref['n']
    assert rows[1].ratio_vs_ref['ci_lo'] <= rows[1].ratio_vs_ref['median'] <= (
        rows[1].ratio_vs_ref['ci_hi'])


def test_adaptive_rounds_stop_when_the_time_is_spent():
    settings = Settings(input_size=(8, 8), threads=1, warmup=0, peak_memory=False,
                        memory_format='contiguous', precision=1e-9, max_time=1e-6)
    _, _, rounds = run_group(_toy_group(), settings)
    assert rounds['stopped'] == 'time' and rounds['widest']['half_width'] > 1e-9
    assert rounds['rounds'] >= MIN_ROUNDS  # however short the time, never fewer


@pytest.mark.parametrize('kwargs, message', [
    (dict(precision=0.02), 'precision and max_time go together'),
    (dict(precision=1.5, max_time=10), r'precision must be in \(0, 1\)'),
    (dict(precision=0.02, max_time=0), 'max_time must be > 0'),
    (dict(precision=0.02, max_time=10, repeats=5), 'repeats .* must be >= 10'),
])
def test_bad_adaptive_settings(kwargs, message):
    with pytest.raises(ValueError, match=message):
        Settings(**kwargs)


@pytest.mark.parametrize('argv, message', [
    (['--precision', '0.02'], '--precision and --max-time go together'),
    (['--precision', '2', '--max-time', '10'], "argument --precision: must be a number in"),
    (['--precision', '0.02', '--max-time', 'soon'], 'argument --max-time: must be seconds'),
    (['--crosscheck'], '--crosscheck times the OpenVINO rows'),
])
def test_bench_refuses_bad_adaptive_arguments(argv, message, capsys):
    with pytest.raises(SystemExit) as e:
        bench.run(['--suite', str(bench.REPO / 'benchmarks' / 'suite.py'), '--groups', 'necks']
                  + argv)
    said = str(e.value.code) if e.value.code not in (0, 2) else capsys.readouterr().err
    assert message in said, said


def test_int8_targets_are_judged_only_where_the_cpu_has_int8_dot_products():
    import importlib.util
    from rfcr.utils.cpu import cpu_flags
    spec = importlib.util.spec_from_file_location('int8_bench',
                                                  bench.REPO / 'benchmarks' / 'int8.py')
    int8 = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(int8)
    fp32, q = 'fp32.xml (openvino)', 'int8.xml (openvino)'
    rows = [dict(name=fp32, path='w/fp32.xml', runtime='openvino', ref=fp32),
            dict(name=q, path='w/int8.xml', runtime='openvino', ref=fp32)]
    a, b = _rounds(0.6, 50, noise=0.02, seed=6)
    (target, ) = int8.int8_targets(rows, {fp32: b, q: a})
    assert target['value'] == pytest.approx(0.6, rel=0.05)
    has_isa = bool(set(int8.INT8_ISA) & cpu_flags())
    assert target['verdict'] == ('met' if has_isa else 'not applicable here')
