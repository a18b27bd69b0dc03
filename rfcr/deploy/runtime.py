"""Latency of one model in PyTorch eager and ONNX Runtime, folded and not, in one run.

Every variant is timed in the same process, interleaved (one call of each variant per
round, the starting variant rotating), so a machine whose load changes during the run
slows all variants alike and their ratios stay meaningful.

Example:
    >>> import torch
    >>> from rfcr.models import RFCR
    >>> from rfcr.deploy.export import neck_wrapper
    >>> from rfcr.deploy.runtime import format_latency_table, measure_deploy_latency
    >>> neck = neck_wrapper(RFCR(in_channels=(8, 16, 24), collect_channels=8,
    ...                          fuse_channels=8))
    >>> feats = (torch.rand(1, 8, 16, 16), torch.rand(1, 16, 8, 8), torch.rand(1, 24, 4, 4))
    >>> rows = measure_deploy_latency(neck, feats, warmup=1, runs=2)
    >>> [row.name for row in rows]  # doctest: +NORMALIZE_WHITESPACE
    ['eager', 'eager channels_last', 'eager eval-path', 'eager eval-path channels_last',
     'eager deploy', 'eager deploy channels_last', 'onnxruntime', 'onnxruntime deploy']
    >>> print(format_latency_table(rows).splitlines()[0])
    variant                        median ms   p90 ms   speed-up
"""
from __future__ import annotations

import contextlib
import copy
import os
import statistics
import tempfile
from dataclasses import dataclass
from typing import Callable, Mapping, Optional, Sequence

import numpy as np
import torch
from torch import Tensor, nn

from ..analysis.latency import interleaved_timings
from ..models.layers.folded import FoldedInference
from ..models.layers.folded import own_layers as _own_layers
from .export import DEFAULT_OPSET, export_onnx, ort_session
from .fold import switch_to_deploy

__all__ = ['Latency', 'deploy_runners', 'exported_ort_runner', 'format_latency_table',
           'measure_deploy_latency', 'ort_runner', 'time_interleaved', 'torch_runner']

RUNTIMES = ('torch', 'onnxruntime')


@dataclass(frozen=True)
class Latency:
    """Wall-clock times of one variant, in milliseconds."""
    name: str
    times_ms: tuple[float, ...]

    @property
    def median_ms(self) -> float:
        return statistics.median(self.times_ms)

    @property
    def p90_ms(self) -> float:
        return float(np.percentile(self.times_ms, 90))


def torch_runner(module: nn.Module, inputs: Sequence[Tensor],
                 channels_last: bool = False, own_layers: bool = False) -> Callable[[], object]:
    """A no-argument callable running ``module(*inputs)`` in inference mode.

    With ``channels_last``, a copy of ``module`` and the 4-D inputs are converted to
    ``torch.channels_last`` first (the caller's module is left as it is). With
    ``own_layers``, rfcr's modules run their own layers rather than their eval-mode
    folded copies (:func:`rfcr.models.layers.own_layers`).
    """
    module = module.eval()
    inputs = tuple(inputs)
    if channels_last:
        module = copy.deepcopy(module).to(memory_format=torch.channels_last)
        inputs = tuple(x.contiguous(memory_format=torch.channels_last) if x.dim() == 4 else x
                       for x in inputs)
    context = _own_layers if own_layers else contextlib.nullcontext

    def run() -> object:
        with torch.inference_mode(), context():
            return module(*inputs)

    return run


def ort_runner(session, inputs: Sequence[Tensor]) -> Callable[[], object]:
    """A no-argument callable running an ONNX Runtime ``session`` on ``inputs``."""
    feeds = {i.name: x.numpy() for i, x in zip(session.get_inputs(), inputs)}

    def run() -> object:
        return session.run(None, feeds)

    return run


def exported_ort_runner(module: nn.Module, inputs: Sequence[Tensor],
                        threads: Optional[int] = None, opset: int = DEFAULT_OPSET,
                        path: Optional[str | os.PathLike] = None) -> Callable[[], object]:
    """:func:`ort_runner` of ``module(*inputs)`` exported to ONNX (static shapes) at
    ``path``, by default a temporary file removed once the session holds the graph."""
    with tempfile.TemporaryDirectory() as tmp:
        path = os.fspath(path) if path is not None else os.path.join(tmp, 'model.onnx')
        export_onnx(module, inputs, path, opset=opset)
        return ort_runner(ort_session(path, threads), inputs)


def time_interleaved(runners: Mapping[str, Callable[[], object]], warmup: int = 5,
                     runs: int = 30) -> list[Latency]:
    """Time each runner ``runs`` times after ``warmup`` calls, interleaved: every round
    calls each runner once, starting one further along each round
    (:func:`rfcr.analysis.latency.interleaved_timings`)."""
    for name, value in (('warmup', warmup), ('runs', runs)):
        if isinstance(value, bool) or not isinstance(value, int) or value < (name == 'runs'):
            raise ValueError(f'{name} must be an int >= {int(name == "runs")}, got {value!r}')
    times = interleaved_timings(runners, repeats=runs, warmup=warmup)
    return [Latency(name, tuple(t * 1e3 for t in ts)) for name, ts in times.items()]


def deploy_runners(module: nn.Module,
                   inputs: Sequence[Tensor],
                   *,
                   runtimes: Sequence[str] = RUNTIMES,
                   channels_last: bool = True,
                   threads: Optional[int] = None,
                   opset: int = DEFAULT_OPSET,
                   onnx_dir: Optional[str | os.PathLike] = None
                   ) -> dict[str, Callable[[], object]]:
    """Runners of ``module`` unfolded and folded (:func:`switch_to_deploy`), in PyTorch
    eager (contiguous, and channels_last if asked) and in ONNX Runtime, by name:
    ``eager``, ``eager channels_last``, ``eager deploy``, ``eager deploy channels_last``,
    ``onnxruntime``, ``onnxruntime deploy`` (those of the ``runtimes`` asked). The unfolded
    eager runners run the layers as built (:func:`rfcr.models.layers.own_layers`); where
    ``module`` holds rfcr modules with an eval-mode fast path, ``eager eval-path`` (and
    ``eager eval-path channels_last``) time plain eval mode, which runs their folded copies.

    Pass them, alone or merged with other runners, to :func:`time_interleaved`.

    Args:
        module: Called as ``module(*inputs)`` and returning a flat tuple of tensors, e.g.
            :func:`~rfcr.deploy.export.detector_wrapper` of a detector. It is put in eval
            mode and not otherwise modified: the folded variant is a copy.
        inputs: The inputs every runner runs on (the ONNX graphs are exported static).
        runtimes: Any of ``'torch'`` and ``'onnxruntime'``.
        channels_last: Add the channels_last eager runners.
        threads: Intra-op threads of the ONNX Runtime sessions (``None``: ORT's default).
            PyTorch's are whatever ``torch.get_num_threads()`` is when the runners run.
        opset: ONNX opset of the exported graphs.
        onnx_dir: Where to keep the two ``.onnx`` files; by default they are written to a
            temporary folder and removed once the sessions hold them.
    """
    runtimes = tuple(runtimes)
    if not runtimes or not set(runtimes) <= set(RUNTIMES):
        raise ValueError(f'runtimes must be a non-empty subset of {RUNTIMES}, got {runtimes!r}')
    inputs = tuple(inputs)
    module = module.eval()
    variants = {'': module, ' deploy': switch_to_deploy(copy.deepcopy(module))}
    runners: dict[str, Callable[[], object]] = {}
    if 'torch' in runtimes:
        eager = {'': (module, True)}  # name suffix: (module, own layers)
        if any(isinstance(m, FoldedInference) for m in module.modules()):
            eager[' eval-path'] = (module, False)
        eager[' deploy'] = (variants[' deploy'], False)
        for suffix, (m, own) in eager.items():
            runners[f'eager{suffix}'] = torch_runner(m, inputs, own_layers=own)
            if channels_last:
                runners[f'eager{suffix} channels_last'] = torch_runner(m, inputs, True, own)
    if 'onnxruntime' in runtimes:
        for suffix, m in variants.items():
            path = (None if onnx_dir is None else
                    os.path.join(onnx_dir, f'model{suffix.replace(" ", "_")}.onnx'))
            runners[f'onnxruntime{suffix}'] = exported_ort_runner(m, inputs, threads, opset,
                                                                  path)
    return runners


def measure_deploy_latency(module: nn.Module,
                           inputs: Sequence[Tensor],
                           *,
                           runtimes: Sequence[str] = RUNTIMES,
                           channels_last: bool = True,
                           warmup: int = 5,
                           runs: int = 30,
                           threads: Optional[int] = None,
                           opset: int = DEFAULT_OPSET,
                           onnx_dir: Optional[str | os.PathLike] = None) -> list[Latency]:
    """Time the :func:`deploy_runners` of ``module`` in one interleaved run
    (:func:`time_interleaved`), with ``threads`` intra-op threads in both PyTorch
    (restored afterwards) and ONNX Runtime (``None``: each library's default). The other
    arguments are :func:`deploy_runners`'."""
    runners = deploy_runners(module, inputs, runtimes=runtimes, channels_last=channels_last,
                             threads=threads, opset=opset, onnx_dir=onnx_dir)
    previous_threads = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        return time_interleaved(runners, warmup, runs)
    finally:
        torch.set_num_threads(previous_threads)


def format_latency_table(rows: Sequence[Latency], baseline: Optional[str] = None) -> str:
    """A text table of the rows, with each row's speed-up (median) over ``baseline``
    (the first row by default)."""
    if not rows:
        return ''
    base = next((r for r in rows if r.name == baseline), None) if baseline else rows[0]
    if base is None:
        raise ValueError(f'baseline={baseline!r} is not one of {[r.name for r in rows]}')
    width = max(28, *(len(r.name) for r in rows))
    lines = [f'{"variant":<{width}}  median ms   p90 ms   speed-up']
    for r in rows:
        lines.append(f'{r.name:<{width}}  {r.median_ms:9.2f}  {r.p90_ms:7.2f}  '
                     f'{base.median_ms / r.median_ms:8.2f}x')
    return '\n'.join(lines)
