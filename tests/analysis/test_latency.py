"""The one timing harness: interleaving, paired ratios and peak memory, on fake clocks and
known allocations. No timing assertions: only what the
code computes from the times it is given."""
import itertools
from types import SimpleNamespace

import pytest
import torch

from rfcr.analysis.latency import (Stats, _peak_of, best_format, interleaved_timings,
                                   paired_ratio, peak_memory, percentile)


def test_rounds_rotate_the_start_and_pair_by_index():
    calls = []
    fns = {n: (lambda n=n: calls.append(n)) for n in 'abc'}
    ticks = itertools.count()
    times = interleaved_timings(fns, repeats=4, warmup=1, clock=lambda: next(ticks))
    assert calls[:3] == ['a', 'b', 'c']  # warm-up
    assert calls[3:] == ['a', 'b', 'c', 'b', 'c', 'a', 'c', 'a', 'b', 'a', 'b', 'c']
    assert {n: len(t) for n, t in times.items()} == {'a': 4, 'b': 4, 'c': 4}
    assert all(t == 1 for ts in times.values() for t in ts)


def test_paired_ratio_cancels_load_that_hits_both_sides():
    load = [1.0, 3.0, 1.0, 5.0, 1.0]  # the machine slows down and recovers
    a = [2 * x for x in load]
    b = list(load)
    assert paired_ratio(a, b).median == 2.0
    assert paired_ratio(a, b).p90 == 2.0
    assert Stats.of(a).median / Stats.of(b).median == 2.0
    with pytest.raises(ValueError, match='equal, non-zero lengths, got 2 and 3'):
        paired_ratio([1, 2], [1, 2, 3])


def test_percentile_and_best_format():
    assert percentile([4, 1, 3, 2], 50) == 2.5
    assert percentile([1, 2, 3, 4, 5], 90) == pytest.approx(4.6)
    with pytest.raises(ValueError, match=r'q must be in \[0, 100\], got 101'):
        percentile([1], 101)
    assert best_format({'contiguous': [3, 3, 9], 'channels_last': [2, 8, 8]}) == 'contiguous'


def test_bad_arguments():
    with pytest.raises(ValueError, match='repeats must be >= 1, got 0'):
        interleaved_timings({'a': lambda: None}, repeats=0)
    with pytest.raises(ValueError, match='warmup must be >= 0, got -1'):
        interleaved_timings({'a': lambda: None}, repeats=1, warmup=-1)


def _event(start, nbytes, children=()):
    """A profiler event as torch.profiler's ``events()`` gives it."""
    return SimpleNamespace(time_range=SimpleNamespace(start=start), cpu_memory_usage=nbytes,
                           cpu_children=list(children))


def test_peak_is_the_largest_running_total():
    events = [_event(0, 100), _event(1, 50), _event(2, -100), _event(3, 20), _event(4, -70)]
    assert _peak_of(events) == 150
    assert _peak_of([_event(5, -10), _event(1, 10)]) == 10  # taken in time order
    # An op that allocates 80 inside and keeps 30: its peak is inside it.
    op = _event(1, 30, [_event(1.1, 80), _event(1.2, -50)])
    assert _peak_of([_event(0, 10), op]) == 90


def test_cpu_peak_memory_sees_live_tensors():
    n = 1 << 20  # 4 MiB of float32

    def two_live():
        a = torch.ones(n)
        b = torch.ones(n)
        return a.sum() + b.sum()

    def one_at_a_time():
        torch.ones(n).sum()
        torch.ones(n).sum()

    assert peak_memory(two_live) >= 2 * 4 * n
    assert 4 * n <= peak_memory(one_at_a_time) < 2 * 4 * n
