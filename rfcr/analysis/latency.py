"""Latency and peak memory, measured A/B interleaved so ratios survive a noisy machine.

Every candidate runs once per *round*, round after round, the start rotating so that no
candidate always follows the same one. A ratio between two candidates is the median of
their per-round ratios: load that comes and goes (other jobs, frequency changes) hits
both sides of a pair alike, so the ratio stays put while the absolute times drift.

Example:
    >>> import torch
    >>> from rfcr.analysis.latency import interleaved_timings, paired_ratio
    >>> small, large = torch.nn.Conv2d(8, 8, 1), torch.nn.Conv2d(8, 64, 3)
    >>> x = torch.rand(1, 8, 32, 32)
    >>> with torch.inference_mode():
    ...     times = interleaved_timings({'small': lambda: small(x), 'large': lambda: large(x)},
    ...                                 repeats=5, warmup=1)
    >>> sorted(times), len(times['small'])
    (['large', 'small'], 5)
    >>> paired_ratio(times['large'], times['small']).median > 1
    True
"""
from __future__ import annotations

import math
import os
import statistics
import time
from dataclasses import dataclass
from typing import Callable, Mapping, Optional, Sequence

import torch

MEMORY_FORMATS = {'contiguous': torch.contiguous_format, 'channels_last': torch.channels_last}


def default_threads() -> int:
    """All cores this process may run on (its CPU affinity), as ``rfcr-bench`` defaults."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0-100) with linear interpolation, as ``numpy.percentile``."""
    if not values:
        raise ValueError('percentile of an empty sequence')
    if not 0 <= q <= 100:
        raise ValueError(f'q must be in [0, 100], got {q!r}')
    xs = sorted(values)
    pos = (len(xs) - 1) * q / 100
    lo, hi = math.floor(pos), math.ceil(pos)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


@dataclass(frozen=True)
class Stats:
    """Median, 10th and 90th percentile of a sample."""
    median: float
    p10: float
    p90: float
    n: int

    @classmethod
    def of(cls, values: Sequence[float]) -> 'Stats':
        return cls(statistics.median(values), percentile(values, 10), percentile(values, 90),
                   len(values))


def paired_ratio(a: Sequence[float], b: Sequence[float]) -> Stats:
    """Statistics of ``a[i] / b[i]`` over rounds ``i``: how many times slower ``a`` is."""
    if len(a) != len(b) or not a:
        raise ValueError(f'paired samples need equal, non-zero lengths, got {len(a)} and '
                         f'{len(b)}')
    return Stats.of([x / y for x, y in zip(a, b)])


def synchronizer(device: torch.device | str) -> Callable[[], None]:
    """What to call before reading the clock: waits for queued CUDA kernels."""
    device = torch.device(device)
    if device.type == 'cuda':
        return lambda: torch.cuda.synchronize(device)
    return lambda: None


def interleaved_timings(candidates: Mapping[str, Callable[[], object]],
                        repeats: int,
                        warmup: int = 3,
                        sync: Callable[[], None] = lambda: None,
                        on_round: Optional[Callable[[int], None]] = None,
                        clock: Callable[[], float] = time.perf_counter
                        ) -> dict[str, list[float]]:
    """Seconds per call of every candidate, ``repeats`` interleaved rounds after warm-up.

    Args:
        candidates: Name -> zero-argument callable (one forward pass).
        repeats: Timed rounds; every candidate runs once per round.
        warmup: Untimed calls of every candidate first (allocator, oneDNN primitive and
            cuDNN caches, lazy init).
        sync: Called before each clock read (``synchronizer('cuda')`` on GPU).
        on_round: Called with the round index after each round (progress bars).
        clock: Seconds counter. Wall clock by default; ``time.thread_time`` counts only
            this thread's CPU time, which ignores preemption by other jobs (useful for
            single-threaded A/B work on a shared machine, not for reported latencies).

    Returns:
        Name -> list of ``repeats`` timings, round ``i`` at index ``i``.
    """
    if repeats < 1:
        raise ValueError(f'repeats must be >= 1, got {repeats!r}')
    if warmup < 0:
        raise ValueError(f'warmup must be >= 0, got {warmup!r}')
    names = list(candidates)
    if not names:
        return {}
    for _ in range(warmup):
        for name in names:
            candidates[name]()
    sync()
    times: dict[str, list[float]] = {name: [] for name in names}
    for r in range(repeats):
        start = r % len(names)
        for name in names[start:] + names[:start]:
            fn = candidates[name]
            sync()
            t0 = clock()
            fn()
            sync()
            times[name].append(clock() - t0)
        if on_round is not None:
            on_round(r)
    return times


def best_format(times: Mapping[str, Sequence[float]]) -> str:
    """The key (a memory format) with the lowest median time."""
    return min(times, key=lambda k: statistics.median(times[k]))


def peak_memory(fn: Callable[[], object], device: torch.device | str = 'cpu') -> int:
    """Peak bytes allocated while ``fn`` runs, above what was allocated before it.

    CUDA: the caching allocator's peak statistic. CPU: from the profiler's memory events
    (``torch.profiler`` with ``profile_memory=True``): the largest running total of the
    bytes each op leaves allocated, taken op by op in time order and within each op over
    its sub-ops (activations and workspaces; weights and inputs that exist before the call
    are not counted).
    """
    device = torch.device(device)
    if device.type == 'cuda':
        torch.cuda.synchronize(device)
        base = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
        fn()
        torch.cuda.synchronize(device)
        return torch.cuda.max_memory_allocated(device) - base
    from torch.profiler import ProfilerActivity, profile
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    return _peak_of([e for e in prof.events() if e.cpu_parent is None])


def _peak_of(events) -> int:
    """Largest running total of the ``cpu_memory_usage`` (bytes allocated minus freed) of
    profiler ``events`` in start order, each op's own sub-ops included."""
    live = peak = 0
    for e in sorted(events, key=lambda e: e.time_range.start):
        inside = _peak_of(e.cpu_children) if e.cpu_children else 0
        peak = max(peak, live + max(inside, e.cpu_memory_usage))
        live += e.cpu_memory_usage
    return peak
