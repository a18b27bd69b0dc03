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

import functools
import math
import os
import statistics
import time
from dataclasses import dataclass
from fractions import Fraction
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
    return Stats.of(_paired(a, b))


def _paired(a: Sequence[float], b: Sequence[float]) -> list[float]:
    if len(a) != len(b) or not a:
        raise ValueError(f'paired samples need equal, non-zero lengths, got {len(a)} and '
                         f'{len(b)}')
    return [x / y for x, y in zip(a, b)]


CONFIDENCE = 0.95


@functools.lru_cache(maxsize=None)
def median_ci_ranks(n: int, confidence: float = CONFIDENCE) -> Optional[tuple[int, int]]:
    """The 0-based ranks ``(lo, hi)`` of the sorted sample of ``n`` that bound a
    distribution-free ``confidence`` interval for its median, or ``None`` when ``n`` is too
    small for any (fewer than 6 values at 95 %).

    The count of values below the true median is Binomial(n, 1/2) whatever the
    distribution (values continuous, rounds independent), so ``[x(k), x(n-k+1)]`` (1-based)
    covers the median with probability ``1 - 2 P(B <= k-1)``: ``k`` is the largest rank
    keeping that at least ``confidence``.

    Example:
        >>> median_ci_ranks(5), median_ci_ranks(6), median_ci_ranks(10), median_ci_ranks(100)
        (None, (0, 5), (1, 8), (39, 60))
    """
    if n < 1:
        raise ValueError(f'n must be >= 1, got {n!r}')
    if not 0 < confidence < 1:
        raise ValueError(f'confidence must be in (0, 1), got {confidence!r}')
    alpha, tail, k = Fraction(1 - confidence) / 2 * 2 ** n, 0, 0  # exact: no float overflow
    # tail = sum_{i < k} C(n, i); grow k while the next term keeps the tail within alpha.
    while k < n // 2 and tail + math.comb(n, k) <= alpha:
        tail += math.comb(n, k)
        k += 1
    return None if k == 0 else (k - 1, n - k)


@dataclass(frozen=True)
class RatioCI:
    """The median per-round ratio ``a[i] / b[i]`` and its distribution-free confidence
    interval (``lo``, ``hi``; ``-inf``/``inf`` when the rounds are too few for one), over
    ``n`` rounds; ``p10``/``p90`` are the spread of the per-round ratios (the machine's
    noise, which does not shrink with more rounds; the interval does)."""
    median: float
    lo: float
    hi: float
    p10: float
    p90: float
    n: int
    confidence: float = CONFIDENCE

    @property
    def half_width(self) -> float:
        """The interval's larger half, relative to the median (0.02: within +-2 %)."""
        return max(self.hi / self.median - 1, 1 - self.lo / self.median)

    def as_dict(self) -> dict:
        """JSON-ready: ``ci_lo``/``ci_hi`` are ``None`` where there is no interval."""
        finite = math.isfinite(self.lo) and math.isfinite(self.hi)
        return dict(median=self.median, ci_lo=self.lo if finite else None,
                    ci_hi=self.hi if finite else None, p10=self.p10, p90=self.p90, n=self.n,
                    confidence=self.confidence)


def ratio_ci(a: Sequence[float], b: Sequence[float],
             confidence: float = CONFIDENCE) -> RatioCI:
    """:class:`RatioCI` of the paired per-round ratios ``a[i] / b[i]``.

    Example:
        >>> r = ratio_ci([2.0, 2.2, 1.8, 2.1, 1.9, 2.0, 2.05], [1.0] * 7)
        >>> r.median, (r.lo, r.hi), r.n
        (2.0, (1.8, 2.2), 7)
    """
    values = sorted(_paired(a, b))
    s = Stats.of(values)
    ranks = median_ci_ranks(len(values), confidence)
    lo, hi = (-math.inf, math.inf) if ranks is None else (values[ranks[0]], values[ranks[1]])
    return RatioCI(s.median, lo, hi, s.p10, s.p90, s.n, confidence)


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
                        clock: Callable[[], float] = time.perf_counter,
                        stop: Optional[Callable[[dict[str, list[float]], int], bool]] = None
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
        stop: Called after each round with the timings so far and the rounds done; when
            it returns true no more rounds run (adaptive rounds: ``repeats`` is then the
            most).

    Returns:
        Name -> list of the timings of every round run (``repeats`` unless ``stop``
        ended them sooner), round ``i`` at index ``i``.
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
        if stop is not None and stop(times, r + 1):
            break
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
