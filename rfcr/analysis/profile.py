"""Where a model's time goes on a runtime: time per op type, and what fragmentation costs.

One profile per (model, runtime): the runtime's own per-node times (ONNX Runtime's
profiler, OpenVINO's ``PERF_COUNT`` after its fusions, ``torch.profiler`` for eager and
compiled PyTorch), summed per op type and divided by the number of runs. Fragmentation
shows as the node count, the median node time, the share of time in short nodes, and the
wall time no node accounts for (dispatch between nodes, framework overhead; for
``torch.compile`` also inductor's own generated kernels, which the profiler does not
itemize).

Example:
    >>> import torch
    >>> from rfcr.analysis.profile import profile_runtime
    >>> conv = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.ReLU())
    >>> p = profile_runtime('eager', conv, (torch.rand(1, 3, 16, 16), ), threads=1, runs=3)
    >>> sorted(p.by_type)[:2], p.nodes
    (['aten::conv2d', 'aten::relu'], 2)
"""
from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from typing import Hashable, Mapping, Optional, Sequence

import torch
from torch import nn

from ..deploy.runtime import RUNTIMES, Runner, get_runtime

__all__ = ['Profile', 'SHORT_NODE_US', 'format_difference', 'format_profiles',
           'profile_interleaved', 'profile_runner', 'profile_runtime']

SHORT_NODE_US = 20.0  # a node shorter than this is mostly dispatch, not arithmetic


@dataclass
class Profile:
    """Per-inference times of one model on one runtime (milliseconds)."""
    name: str
    runtime: str
    wall_ms: float  # median wall time of one inference, profiler on
    nodes: int  # node (kernel, op) executions per inference
    median_node_us: float
    short_node_ms: float  # time in nodes shorter than SHORT_NODE_US
    by_type: dict[str, tuple[float, int]] = field(default_factory=dict)  # ms, count
    group: str = ''  # the benchmark group of the row profiled, if any
    walls: list[float] = field(default_factory=list)  # seconds of each profiled run

    @property
    def node_ms(self) -> float:
        return sum(ms for ms, _ in self.by_type.values())

    @property
    def unaccounted_ms(self) -> float:
        """Wall time outside every recorded node."""
        return max(self.wall_ms - self.node_ms, 0.0)

    def as_dict(self) -> dict:
        return dict(name=self.name, group=self.group, runtime=self.runtime,
                    wall_ms=self.wall_ms,
                    nodes=self.nodes, median_node_us=self.median_node_us,
                    short_node_ms=self.short_node_ms, node_ms=self.node_ms,
                    unaccounted_ms=self.unaccounted_ms,
                    by_type={k: dict(ms=v[0], count=v[1]) for k, v in self.by_type.items()},
                    walls_ms=[w * 1e3 for w in self.walls])


def _summarize(name: str, runtime: str, records: Sequence[tuple[str, float]], runs: int,
               walls: Sequence[float]) -> Profile:
    by_type: dict[str, list] = {}
    for op, seconds in records:
        entry = by_type.setdefault(op, [0.0, 0])
        entry[0] += seconds * 1e3 / runs
        entry[1] += 1
    ordered = dict(sorted(((op, (ms, round(n / runs))) for op, (ms, n) in by_type.items()),
                          key=lambda kv: -kv[1][0]))
    durations_us = [s * 1e6 for _, s in records]
    return Profile(name, runtime, wall_ms=statistics.median(walls) * 1e3, walls=list(walls),
                   nodes=round(len(records) / runs),
                   median_node_us=statistics.median(durations_us) if records else 0.0,
                   short_node_ms=sum(d for d in durations_us if d < SHORT_NODE_US) * 1e-3
                   / runs,
                   by_type=ordered)


def profile_runner(runner: Runner, runtime: str, runs: int = 20, name: str = '') -> Profile:
    """Profile ``runner`` (a :class:`~rfcr.deploy.runtime.Runner` of ``runtime``, e.g. the
    one that was timed) over ``runs`` runs, with the runtime's own profiler."""
    if runs < 1:
        raise ValueError(f'runs must be >= 1, got {runs!r}')
    records, walls = runner.profile(runs)
    return _summarize(name, runtime, records, runs, walls)


def profile_interleaved(runners: Mapping[Hashable, tuple[Runner, str, str]], runs: int = 20,
                        blocks: int = 4) -> dict[Hashable, Profile]:
    """Profile several runners, ``key -> (runner, runtime, name)``, in ``blocks``
    interleaved blocks of ``runs / blocks`` runs each (a, b, c, a, b, c, ...), so that load
    which comes and goes falls on all of them alike: run ``i`` of each lies in the same
    block, and ratios of their walls pair them as rfcr-bench's rounds do.

    Example:
        >>> import torch
        >>> from rfcr.deploy.runtime import eager_runner
        >>> x = torch.rand(1, 3, 16, 16)
        >>> small, large = (eager_runner(torch.nn.Conv2d(3, c, 3), (x, ), 1) for c in (4, 64))
        >>> p = profile_interleaved({'s': (small, 'eager', 's'), 'l': (large, 'eager', 'l')},
        ...                         runs=4, blocks=2)
        >>> [len(p[k].walls) for k in 'sl'], p['l'].nodes
        ([4, 4], 1)
    """
    if runs < blocks or blocks < 1:
        raise ValueError(f'runs must be >= blocks >= 1, got runs={runs!r}, blocks={blocks!r}')
    sizes = [runs // blocks + (i < runs % blocks) for i in range(blocks)]
    got: dict[Hashable, tuple[list, list]] = {key: ([], []) for key in runners}
    for size in sizes:
        for key, (runner, _, _) in runners.items():
            records, walls = runner.profile(size)
            got[key][0].extend(records)
            got[key][1].extend(walls)
    return {key: _summarize(name, runtime, got[key][0], runs, got[key][1])
            for key, (_, runtime, name) in runners.items()}


def profile_runtime(runtime: str, module: nn.Module, inputs: Sequence[torch.Tensor],
                    threads: Optional[int] = None, runs: int = 20, name: str = '',
                    warmup: int = 3) -> Profile:
    """Profile ``module(*inputs)`` (a flat tuple of tensors out, e.g. an
    :class:`~rfcr.deploy.export.OnnxWrapper`) on ``runtime``, one of
    :data:`~rfcr.deploy.runtime.RUNTIMES`, with ``threads`` threads: its runner
    (:meth:`~rfcr.deploy.runtime.Runtime.runner`), called ``warmup`` times, then
    :func:`profile_runner`."""
    if runs < 1:
        raise ValueError(f'runs must be >= 1, got {runs!r}')
    runner = get_runtime(runtime).runner(module, inputs, threads)
    for _ in range(warmup):
        runner()
    return profile_runner(runner, runtime, runs, name)


def format_profiles(profiles: Sequence[Profile], top: int = 6) -> str:
    """A markdown table: one row per profile, the ``top`` op types by time."""
    lines = [f'| model | runtime | wall ms | nodes | median node µs | nodes < '
             f'{SHORT_NODE_US:g} µs, ms | outside nodes, ms | top op types: ms (count) |',
             '|---|---|---:|---:|---:|---:|---:|---|']
    for p in profiles:
        ops = ', '.join(f'{op} {ms:.2f} ({n})' for op, (ms, n) in list(p.by_type.items())[:top])
        lines.append(f'| {p.name} | {RUNTIMES[p.runtime].label} | {p.wall_ms:.2f} | '
                     f'{p.nodes} | {p.median_node_us:.1f} | {p.short_node_ms:.2f} | '
                     f'{p.unaccounted_ms:.2f} | {ops} |')
    return '\n'.join(lines)


def format_difference(a: Profile, b: Profile, expected: float, top: int = 8) -> str:
    """Where ``a``'s time differs from ``expected`` times ``b``'s (``expected``: the two
    models' MAC ratio, what a compute-bound runtime would give), per op type and outside
    every node: ``a - expected * b`` in ms, largest first. Their sum is ``a``'s wall time
    beyond the expected ratio (negative: below it).

    Example:
        >>> a = Profile('a', 'eager', 10.0, 2, 1.0, 0.0, {'conv': (6.0, 1), 'add': (2.0, 1)})
        >>> b = Profile('b', 'eager', 10.0, 2, 1.0, 0.0, {'conv': (8.0, 1), 'add': (2.0, 1)})
        >>> print(format_difference(a, b, 0.75).splitlines()[-1])
        | total (wall) | 10.00 | 10.00 | +2.50 |
    """
    ops = list(dict.fromkeys(list(a.by_type) + list(b.by_type)))
    rows = [(op, a.by_type.get(op, (0.0, 0))[0], b.by_type.get(op, (0.0, 0))[0]) for op in ops]
    rows.sort(key=lambda r: -abs(r[1] - expected * r[2]))
    lines = [f'| op type | {a.name} ms | {b.name} ms | {a.name} - {expected:.3f} x '
             f'{b.name}, ms |', '|---|---:|---:|---:|']
    lines += [f'| {op} | {ma:.2f} | {mb:.2f} | {ma - expected * mb:+.2f} |'
              for op, ma, mb in rows[:top]]
    rest = rows[top:]
    if rest:
        ma, mb = sum(r[1] for r in rest), sum(r[2] for r in rest)
        lines.append(f'| {len(rest)} other op types | {ma:.2f} | {mb:.2f} | '
                     f'{ma - expected * mb:+.2f} |')
    lines.append(f'| outside nodes | {a.unaccounted_ms:.2f} | {b.unaccounted_ms:.2f} | '
                 f'{a.unaccounted_ms - expected * b.unaccounted_ms:+.2f} |')
    lines.append(f'| total (wall) | {a.wall_ms:.2f} | {b.wall_ms:.2f} | '
                 f'{a.wall_ms - expected * b.wall_ms:+.2f} |')
    return '\n'.join(lines)
