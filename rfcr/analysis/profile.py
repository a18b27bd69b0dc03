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
from typing import Optional, Sequence

import torch
from torch import nn

from ..deploy.runtime import RUNTIMES, Runner, get_runtime

__all__ = ['Profile', 'SHORT_NODE_US', 'format_profiles', 'profile_runner', 'profile_runtime']

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

    @property
    def node_ms(self) -> float:
        return sum(ms for ms, _ in self.by_type.values())

    @property
    def unaccounted_ms(self) -> float:
        """Wall time outside every recorded node."""
        return max(self.wall_ms - self.node_ms, 0.0)

    def as_dict(self) -> dict:
        return dict(name=self.name, runtime=self.runtime, wall_ms=self.wall_ms,
                    nodes=self.nodes, median_node_us=self.median_node_us,
                    short_node_ms=self.short_node_ms, node_ms=self.node_ms,
                    unaccounted_ms=self.unaccounted_ms,
                    by_type={k: dict(ms=v[0], count=v[1]) for k, v in self.by_type.items()})


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
    return Profile(name, runtime, wall_ms=statistics.median(walls) * 1e3,
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
