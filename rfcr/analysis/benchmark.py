"""Side-by-side cost of models: parameters, MACs, latency, peak memory, ratios.

A :class:`Group` is measured in one interleaved run (:mod:`rfcr.analysis.latency`): every
candidate, in every memory format asked for, runs once per round. Each row reports its
faster format and its ratio against a reference row of the same group, computed round by
round, so the ratio is as good as the machine is steady *within a round*.

Example:
    >>> import torch
    >>> from torch import nn
    >>> from rfcr.analysis.benchmark import Candidate, Group, Settings, run_group
    >>> def image(batch, size):  # inputs: what model(*inputs) takes
    ...     return (torch.rand(batch, 8, size[0] // 8, size[1] // 8), )
    >>> group = Group('toy', baseline='small', repeats=3, candidates=[
    ...     Candidate('small', 'toy', lambda: nn.Conv2d(8, 8, 1), image),
    ...     Candidate('large', 'toy', lambda: nn.Conv2d(8, 64, 3), image)])
    >>> rows, _, rounds = run_group(group, Settings(input_size=(64, 64), threads=1, warmup=1))
    >>> [(r.name, r.params['total'], r.macs['total']) for r in rows]
    [('small', 72, 4096), ('large', 4672, 165888)]
    >>> rows[0].ratio_vs_ref['median'], rounds['rounds'], rounds['stopped']
    (1.0, 3, 'rounds')
"""
from __future__ import annotations

import copy
import dataclasses
import math
import statistics
import time
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import torch
from torch import nn

from ..deploy.export import OnnxWrapper
from ..deploy.runtime import (EAGER, EXPORTED_RUNTIMES, FILE_RUNTIMES, RUNTIMES, Runner,
                              TorchRunner, default_runtime, get_runtime, load_exported)
from ..utils.config import parameter_counts
from ..utils.cpu import cpu_flags
from .flops import count_macs
from .report import BenchRow
from .latency import (MEMORY_FORMATS, RatioCI, Stats, best_format, interleaved_timings,
                      median_ci_ranks, peak_memory, ratio_ci, synchronizer)

FORMAT_CHOICES = ('auto', 'contiguous', 'channels_last')
MIN_ROUNDS = 10  # adaptive rounds: the fewest before the intervals are read
MAX_ROUNDS = 100_000  # adaptive rounds without --repeats: the most (the time runs out first)


def call_model(model: nn.Module, inputs: tuple) -> Any:
    """``model(*inputs)``: a detector's tensor-mode forward, a neck's forward."""
    return model(*inputs)


def image(batch: int, size: tuple[int, int]) -> tuple:
    """A detector's input, random: ``model(*image(...))`` runs its tensor-mode forward."""
    return (torch.rand(batch, 3, *size), )


@dataclass
class Candidate:
    """One row: how to build the model and its inputs.

    Args:
        name: Row label, unique in its group.
        family: Plot colour and legend entry.
        build: Returns the model in eval mode (random weights are fine).
        make_inputs: ``(batch_size, (H, W)) -> inputs`` for ``call``, CPU tensors.
        call: ``(model, inputs) -> outputs``; default ``model(*inputs)``.
        source: Where it comes from (config path), for the record.
        ref: Row it is compared to; default: the group's baseline.
        not_on: Runtimes it is not run on, each with why (e.g. an op the runtime lacks):
            the tables say so instead of trying.
    """
    name: str
    family: str
    build: Callable[[], nn.Module]
    make_inputs: Callable[[int, tuple[int, int]], tuple]
    call: Callable[[nn.Module, tuple], Any] = call_model
    source: str = ''
    ref: Optional[str] = None
    not_on: dict[str, str] = field(default_factory=dict)


@dataclass
class Group:
    """Candidates timed together; ratios are against ``baseline`` unless a row says."""
    name: str
    baseline: str
    candidates: list[Candidate]
    repeats: int = 30
    note: str = ''

    def __post_init__(self) -> None:
        names = [c.name for c in self.candidates]
        if len(set(names)) != len(names):
            raise ValueError(f'group {self.name!r}: candidate names must be unique, got {names}')
        for ref in [self.baseline] + [c.ref for c in self.candidates if c.ref]:
            if ref not in names:
                raise ValueError(f'group {self.name!r}: reference {ref!r} is not one of '
                                 f'its candidates {names}')


@dataclass
class Settings:
    """How to measure: input, batch, threads, device, memory formats, rounds."""
    input_size: tuple[int, int] = (320, 320)
    batch_size: int = 1
    threads: int = 1
    device: str = 'cpu'
    memory_format: str = 'auto'  # 'auto' times both formats and keeps the faster
    warmup: int = 3
    repeats: Optional[int] = None  # None: each group's own; with precision: the most
    peak_memory: bool = True
    # Adaptive rounds: with ``precision`` (e.g. 0.02), a group's rounds go on, after
    # MIN_ROUNDS, until every ratio its tables and targets use has a confidence interval
    # within +-precision of its median (relative), or its timed rounds took ``max_time``
    # seconds. Without: ``repeats`` rounds (the group's own if None).
    precision: Optional[float] = None
    max_time: Optional[float] = None
    # Runtimes besides PyTorch eager (rfcr.deploy.runtime.EXPORTED_RUNTIMES: ONNX Runtime,
    # OpenVINO, torch.compile): every candidate (as built: folded or not) also runs there,
    # in the same rounds as eager.
    runtimes: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.memory_format not in FORMAT_CHOICES:
            raise ValueError(f'memory_format must be one of {FORMAT_CHOICES}, got '
                             f'{self.memory_format!r}')
        self.runtimes = tuple(self.runtimes)
        unknown = [r for r in self.runtimes if r not in EXPORTED_RUNTIMES]
        if unknown or len(set(self.runtimes)) != len(self.runtimes):
            raise ValueError(f'runtimes must be distinct names from {EXPORTED_RUNTIMES}, got '
                             f'{self.runtimes!r}')
        if self.runtimes and self.device != 'cpu':
            raise ValueError(f'runtimes {self.runtimes} run on CPU; got '
                             f'device={self.device!r}')
        for name in ('batch_size', 'threads'):
            if getattr(self, name) < 1:
                raise ValueError(f'{name} must be >= 1, got {getattr(self, name)!r}')
        if self.repeats is not None and self.repeats < 1:
            raise ValueError(f'repeats must be >= 1, got {self.repeats!r}')
        if self.precision is not None and not 0 < self.precision < 1:
            raise ValueError(f'precision must be in (0, 1) (a relative half-width, e.g. '
                             f'0.02), got {self.precision!r}')
        if self.max_time is not None and not self.max_time > 0:
            raise ValueError(f'max_time must be > 0 seconds, got {self.max_time!r}')
        if (self.precision is None) != (self.max_time is None):
            raise ValueError('precision and max_time go together (adaptive rounds: until '
                             'every interval is within precision, or max_time seconds), got '
                             f'precision={self.precision!r}, max_time={self.max_time!r}')
        if (self.precision is not None and self.repeats is not None
                and self.repeats < MIN_ROUNDS):
            raise ValueError(f'with precision, repeats (the most rounds) must be >= '
                             f'{MIN_ROUNDS}, got {self.repeats!r}')

    @property
    def formats(self) -> list[str]:
        return list(MEMORY_FORMATS) if self.memory_format == 'auto' else [self.memory_format]


def _to(obj: Any, device: torch.device, fmt: torch.memory_format) -> Any:
    if isinstance(obj, torch.Tensor):
        obj = obj.to(device)
        return obj.to(memory_format=fmt) if obj.dim() == 4 else obj
    if isinstance(obj, (list, tuple)):
        return type(obj)(_to(o, device, fmt) for o in obj)
    return obj


def _stats_ms(times: Sequence[float]) -> dict:
    """Median, p10, p90 and the median's 95 % interval (``ci_lo``, ``ci_hi``; absent when
    the rounds are too few) of ``times`` in ms."""
    ms = sorted(t * 1e3 for t in times)
    s = Stats.of(ms)
    stats = dict(median=s.median, p10=s.p10, p90=s.p90, n=s.n)
    ranks = median_ci_ranks(len(ms))
    if ranks is not None:
        stats.update(ci_lo=ms[ranks[0]], ci_hi=ms[ranks[1]])
    return stats


def _macs_by_part(model: nn.Module, inputs: tuple) -> tuple[dict, dict]:
    with torch.no_grad():
        macs = count_macs(model, inputs)
    parts = {'total': macs.total}
    children = dict(model.named_children())
    if 'backbone' in children:  # a detector: split like parameter_counts
        parts['backbone'] = macs.of('backbone')
        parts['neck'] = macs.of('neck')
        parts['head'] = macs.total - parts['backbone'] - parts['neck']
    return parts, dict(macs.unsupported)


def _flatten_inputs(inputs: tuple) -> tuple[tuple[torch.Tensor, ...], Callable]:
    """``inputs`` (tensors, or lists / tuples of tensors) as a flat tuple of tensors, and
    the function rebuilding the structure from such a tuple."""
    flat, spec = [], []
    for item in inputs:
        if isinstance(item, torch.Tensor):
            flat.append(item)
            spec.append(None)
        else:
            flat.extend(item)
            spec.append((type(item), len(item)))

    def rebuild(tensors: Sequence[torch.Tensor]) -> tuple:
        out, i = [], 0
        for s in spec:
            if s is None:
                out.append(tensors[i])
                i += 1
            else:
                out.append(s[0](tensors[i:i + s[1]]))
                i += s[1]
        return tuple(out)

    return tuple(flat), rebuild


def exported_runner(runtime: str, cand: Candidate, model: nn.Module, inputs: tuple,
                    threads: int) -> Runner:
    """``cand.call(model, inputs)`` on ``runtime`` (CPU; exported first where the runtime
    runs a file) with ``threads`` intra-op threads: the runtime table's
    :class:`~rfcr.deploy.runtime.Runner`, which times and profiles the same model."""
    flat, rebuild = _flatten_inputs(inputs)
    wrapper = OnnxWrapper(model, lambda m, xs: cand.call(m, rebuild(xs)))
    return get_runtime(runtime).runner(wrapper, flat, threads)


def candidate_runner(cand: Candidate, runtime: str, settings: Settings,
                     memory_format: str = 'contiguous') -> Runner:
    """A runner of ``cand`` on ``runtime`` built as :func:`exported_runner` builds it (eager:
    in ``memory_format``) and warmed up: for profiling a row that was not timed here."""
    model = cand.build()
    model.eval()
    inputs = cand.make_inputs(settings.batch_size, settings.input_size)
    if runtime == EAGER:
        fmt = MEMORY_FORMATS[memory_format]
        model = model.to(memory_format=fmt)
        inputs = _to(inputs, torch.device('cpu'), fmt)
    runner = exported_runner(runtime, cand, model, inputs, settings.threads)
    for _ in range(settings.warmup):
        runner()
    return runner


def _params_by_part(model: nn.Module) -> dict:
    if 'backbone' in dict(model.named_children()):
        return parameter_counts(model)
    return {'total': sum(p.numel() for p in model.parameters())}


def run_group(group: Group, settings: Settings,
              progress: Optional[Callable[[str, int], None]] = None,
              runners: Optional[dict[tuple[str, str, str], Runner]] = None,
              targets: Sequence['Target'] = ()
              ) -> tuple[list[BenchRow], dict[str, dict[str, list[float]]], dict]:
    """Measure every candidate of ``group`` with ``settings.threads`` threads (the
    process's count is restored after); rows in candidate order, plus raw timings.

    ``progress(message, steps)`` is told of each step done, a step being one forward
    pass (preparing a candidate counts as one per memory format): see :func:`num_steps`.
    ``runners``, if given, receives the runners that were timed, ``(group, candidate,
    variant) -> Runner`` (what rfcr-bench's ``--profile`` profiles without exporting again);
    otherwise they go with the group. They hold models, sessions and files: keep them only
    as long as needed. ``targets``: the group's, whose ratios adaptive rounds
    (``settings.precision``) watch besides the tables' (:func:`watched_ratios`).

    Returns:
        ``(rows, times, rounds)``: a :class:`BenchRow` per candidate; per candidate,
        variant -> seconds per round (variants: the memory formats, ``'eager'`` (the
        faster of them) and each of ``settings.runtimes``); and how the rounds went:
        ``rounds`` (how many), ``stopped`` (``'rounds'``: the fixed count; ``'precision'``:
        every watched interval within it; ``'time'``: ``max_time`` spent first),
        ``seconds`` and ``widest`` (the watched ratio with the widest interval and its
        relative half-width).
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(settings.threads)
    try:
        return _run_group(group, settings, progress or (lambda msg, steps: None),
                          {} if runners is None else runners, targets)
    finally:
        torch.set_num_threads(threads)


def _nest(raw: dict[str, list[float]], formats: Sequence[str]) -> dict[str, dict[str, list[float]]]:
    """``'name|variant'`` -> seconds, as name -> variant -> seconds, with ``'eager'``: the
    faster memory format's timings (lowest median so far)."""
    times: dict[str, dict[str, list[float]]] = {}
    for key, ts in raw.items():
        name, variant = key.split('|')
        times.setdefault(name, {})[variant] = ts
    for t in times.values():
        measured = {f: t[f] for f in formats if f in t}
        if measured:
            t[EAGER] = t[best_format(measured)]
    return times


def watched_ratios(group: Group, times: dict[str, dict[str, list[float]]],
                   targets: Sequence['Target'] = ()) -> dict[str, RatioCI]:
    """Every ratio the tables and ``targets`` read from ``times`` (one group's, as
    :func:`run_group` returns them), with its interval: each row against its reference on
    eager and on every runtime both ran, channels_last's gain, and each target's ratio.

    Example:
        >>> group = Group('g', 'a', [Candidate('a', 'toy', None, None),
        ...                          Candidate('b', 'toy', None, None)])
        >>> ts = {'a': {'eager': [1.0] * 6}, 'b': {'eager': [2.0] * 5 + [2.2]}}
        >>> {k: (r.median, r.hi) for k, r in watched_ratios(group, ts).items()}
        {'b / a (eager)': (2.0, 2.2)}
    """
    out = {}
    refs = {c.name: c.ref or group.baseline for c in group.candidates}
    for name, t in times.items():
        ref = times.get(refs[name], {})
        if refs[name] != name:
            for variant in t:
                if variant not in MEMORY_FORMATS and variant in ref:
                    out[f'{name} / {refs[name]} ({variant})'] = ratio_ci(t[variant], ref[variant])
        if set(MEMORY_FORMATS) <= set(t):
            out[f'{name} channels_last gain'] = ratio_ci(t['contiguous'], t['channels_last'])
    for target in targets:
        ci = target.ratio({group.name: times})
        if ci is not None:
            out[f'target: {target.name} ({target.runtime})'] = ci[1]
    return out


def _widest(watched: dict[str, RatioCI]) -> Optional[dict]:
    """The watched ratio with the widest interval and its relative half-width."""
    if not watched:
        return None
    name, ci = max(watched.items(), key=lambda kv: kv[1].half_width)
    return dict(ratio=name, half_width=ci.half_width)


def _run_group(group: Group, settings: Settings, progress: Callable[[str, int], None],
               kept: dict[tuple[str, str, str], Runner], targets: Sequence['Target']
               ) -> tuple[list[BenchRow], dict[str, dict[str, list[float]]], dict]:
    device = torch.device(settings.device)
    rows, runners = [], {}
    for cand in group.candidates:
        row = BenchRow(group.name, cand.name, cand.family, cand.source,
                       cand.ref or group.baseline)
        rows.append(row)
        try:
            model = cand.build()
            model.eval()  # some modules' train() returns None: no chaining
            inputs = cand.make_inputs(settings.batch_size, settings.input_size)
            row.params = _params_by_part(model)
            row.macs, row.unsupported_ops = _macs_by_part(model, inputs)
            for fmt in settings.formats:
                m = model if len(settings.formats) == 1 else copy.deepcopy(model)
                m = m.to(device, memory_format=MEMORY_FORMATS[fmt])
                x = _to(inputs, device, MEMORY_FORMATS[fmt])
                runner = TorchRunner(partial(cand.call, m), (x, ))
                runner()  # fails here, not in the timed loop
                runners[(cand.name, fmt)] = runner
        except Exception as e:  # a user's config may not build or run: report, go on
            row.error = f'{type(e).__name__}: {e}'
        else:
            for rt in settings.runtimes:
                if rt in cand.not_on:
                    row.runtimes_not_run[rt] = cand.not_on[rt]
                    continue
                try:
                    runners[(cand.name, rt)] = exported_runner(
                        rt, cand, copy.deepcopy(model).to(memory_format=torch.contiguous_format),
                        inputs, settings.threads)
                except Exception as e:  # e.g. an op the exporter or runtime lacks
                    row.runtime_errors[rt] = f'{type(e).__name__}: {e}'
        progress(f'{group.name}: prepared {cand.name}', len(settings.formats))

    adaptive = settings.precision is not None
    repeats = (settings.repeats or MAX_ROUNDS) if adaptive else (settings.repeats
                                                                 or group.repeats)
    state = dict(stopped='rounds', widest=None, check_at=MIN_ROUNDS)
    started = time.perf_counter()

    def stop(raw: dict[str, list[float]], done: int) -> bool:
        """Adaptive rounds: MIN_ROUNDS at least, whatever the time; then the intervals are
        checked each time the rounds have grown by a tenth (fewer looks at the data, and
        cheaper ones), until they are within the precision or the time is spent."""
        if done < MIN_ROUNDS:
            return False
        if time.perf_counter() - started >= settings.max_time:
            state['stopped'] = 'time'
            return True
        if done < state['check_at']:
            return False
        state['check_at'] = max(done + 1, math.ceil(done * 1.1))
        state['widest'] = _widest(watched_ratios(group, _nest(raw, settings.formats), targets))
        if state['widest'] is None:
            return False
        if state['widest']['half_width'] <= settings.precision:
            state['stopped'] = 'precision'
            return True
        return False

    with torch.inference_mode():
        raw = interleaved_timings(
            {f'{n}|{f}': fn for (n, f), fn in runners.items()}, repeats=repeats,
            warmup=settings.warmup, sync=synchronizer(device),
            on_round=lambda r: progress(f'{group.name}: round {r + 1}'
                                        + ('' if adaptive else f'/{repeats}'), len(runners)),
            stop=stop if adaptive else None)
    progress(f'{group.name}: timed', settings.warmup * len(runners))  # the warm-up rounds
    times = _nest(raw, settings.formats)
    for name, t in times.items():
        fmt = next(f for f in settings.formats if t.get(f) is t[EAGER])
        runners[(name, EAGER)] = runners[(name, fmt)]
    kept.update({(group.name, *key): runner for key, runner in runners.items()})
    state['widest'] = _widest(watched_ratios(group, times, targets)) or state['widest']
    rounds = dict(rounds=len(next(iter(raw.values()), [])), stopped=state['stopped'],
                  seconds=round(time.perf_counter() - started, 1), widest=state['widest'])

    for row in rows:
        name = row.name
        if name not in times:
            continue
        t = times[name]
        fmt = next(f for f in settings.formats if t.get(f) is t[EAGER])
        row.memory_format = fmt
        row.latency_ms = _stats_ms(t[EAGER])
        row.latency_ms_by_format = {f: _stats_ms(t[f]) for f in settings.formats if f in t}
        if {'contiguous', 'channels_last'} <= set(t):  # channels_last's gain
            row.channels_last_speedup = _ratio(t['contiguous'], t['channels_last'])
        ref = times.get(row.ref, {})
        if EAGER in ref:
            row.ratio_vs_ref = _ratio(t[EAGER], ref[EAGER])
        for rt in settings.runtimes:
            if rt not in t:
                continue
            entry = dict(latency_ms=_stats_ms(t[rt]),
                         speedup_vs_eager=_ratio(t[EAGER], t[rt]))
            if rt in ref:  # like for like: against the reference on the same runtime
                entry['ratio_vs_ref'] = _ratio(t[rt], ref[rt])
            row.runtimes[rt] = entry
        row.best_runtime = min((EAGER, ) + tuple(r for r in settings.runtimes if r in t),
                                  key=lambda r: statistics.median(t[r]))
        if settings.peak_memory:
            with torch.inference_mode():
                row.peak_memory_mib = peak_memory(runners[(name, fmt)], device) / 2**20
    return rows, times, rounds


def _ratio(a: Sequence[float], b: Sequence[float]) -> dict:
    """The median per-round ratio a/b, its 95 % interval and the per-round spread."""
    return ratio_ci(a, b).as_dict()


def num_steps(group: Group, settings: Settings) -> Optional[int]:
    """Forward passes :func:`run_group` reports to ``progress`` (if every candidate runs);
    ``None`` with adaptive rounds (``settings.precision``), whose count is not known
    ahead."""
    if settings.precision is not None:
        return None
    n = len(group.candidates)
    per_round = sum(len(settings.formats) + sum(rt not in c.not_on for rt in settings.runtimes)
                    for c in group.candidates)
    return n * len(settings.formats) + per_round * (settings.warmup
                                                    + (settings.repeats or group.repeats))


BEST = 'best'  # a Target's runtime: each row on its own fastest runtime


def verdict(lo: float, hi: float, op: str, threshold: float) -> str:
    """``'met'`` when the whole interval ``[lo, hi]`` is on the wanted side of
    ``threshold`` (``op``: ``'<'``, ``'<='``, ``'>'`` or ``'>='``), ``'not met'`` when it
    is wholly on the other side, ``'undecided'`` when it straddles the threshold.

    Example:
        >>> verdict(0.80, 0.90, '<=', 0.95), verdict(0.97, 1.02, '<=', 0.95)
        ('met', 'not met')
        >>> verdict(0.90, 1.00, '<=', 0.95), verdict(1.0, 1.1, '<', 1.0)  # 1.0 is not < 1.0
        ('undecided', 'not met')
    """
    below = op in ('<', '<=')
    if op not in ('<', '<=', '>', '>='):
        raise ValueError(f"op must be one of '<', '<=', '>', '>=', got {op!r}")
    if below:
        met = hi < threshold if op == '<' else hi <= threshold
        missed = lo >= threshold if op == '<' else lo > threshold
    else:
        met = lo > threshold if op == '>' else lo >= threshold
        missed = hi <= threshold if op == '>' else hi < threshold
    return 'met' if met else 'not met' if missed else 'undecided'


@dataclass
class Target:
    """A claim checked on measured ratios: ``a / b`` (paired, same group) vs
    ``threshold``. ``speedup=True`` reports ``b / a`` instead (how many times faster ``a``
    is). Both rows are taken on ``runtime``: ``'eager'`` (each in its faster memory format)
    or one of the exported runtimes; ``'best'`` takes each row on its own fastest runtime
    (lowest median), still paired round by round.

    The verdict reads the ratio's 95 % interval, not its median (:func:`verdict`).
    ``mac_margin``: a claim a compute-bound runtime cannot reach by arithmetic (the
    threshold beyond the two rows' MAC ratio, the ratio it would reach) is judged at the
    MAC ratio + ``mac_margin`` instead (- for speed-ups), the paper's threshold kept
    beside it. ``isa``: CPU flags (``/proc/cpuinfo``) one of which the claim needs (e.g.
    VNNI for INT8); without any, the verdict is ``'not applicable here'``.
    """
    name: str
    group: str
    a: str
    b: str
    op: str  # '<', '<=', '>', '>='
    threshold: float
    speedup: bool = False
    runtime: str = EAGER
    mac_margin: Optional[float] = None
    isa: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.op not in ('<', '<=', '>', '>='):
            raise ValueError(f"target {self.name!r}: op must be one of '<', '<=', '>', "
                             f"'>=', got {self.op!r}")

    def ratio(self, times: dict[str, dict[str, dict[str, list[float]]]]
              ) -> Optional[tuple[list[str], RatioCI]]:
        """``(runtimes of a and b, the ratio with its interval)`` measured in ``times``
        (group -> row -> runtime -> seconds per round); ``None`` where a row was not
        measured there."""
        try:
            (ra, ta), (rb, tb) = (self._times(times[self.group][row])
                                  for row in (self.a, self.b))
        except KeyError:
            return None
        return [ra, rb], ratio_ci(tb, ta) if self.speedup else ratio_ci(ta, tb)

    def check(self, times: dict[str, dict[str, dict[str, list[float]]]],
              macs: Optional[dict[str, dict[str, int]]] = None) -> dict:
        """The ratio measured in ``times``, its interval, the MAC ratio of the two rows
        (``macs``: group -> row -> total MACs) and the verdict (``None`` where a row was
        not measured)."""
        result = dict(name=self.name, group=self.group, a=self.a, b=self.b, op=self.op,
                      threshold=self.threshold, paper_threshold=self.threshold,
                      runtime=self.runtime, measure='speed-up' if self.speedup else 'ratio',
                      mac_ratio=None, restated=False)
        group_macs = (macs or {}).get(self.group, {})
        if group_macs.get(self.a) and group_macs.get(self.b):
            ma, mb = group_macs[self.a], group_macs[self.b]
            result['mac_ratio'] = mb / ma if self.speedup else ma / mb
            mac_ratio, below = result['mac_ratio'], self.op in ('<', '<=')
            if self.mac_margin is not None and (mac_ratio > self.threshold if below
                                                else mac_ratio < self.threshold):
                result['threshold'] = mac_ratio + (self.mac_margin if below
                                                   else -self.mac_margin)
                result['restated'] = True
        measured = self.ratio(times)
        if measured is None:
            return dict(result, value=None, verdict=None)
        if self.runtime == BEST:
            result['runtimes'] = measured[0]
        ci = measured[1]
        result.update({k: v for k, v in ci.as_dict().items() if k != 'median'},
                      value=ci.median, verdict=verdict(ci.lo, ci.hi, self.op,
                                                       result['threshold']))
        if self.isa and not set(self.isa) & cpu_flags():
            result['verdict'] = 'not applicable here'
            result['why'] = f'needs one of {", ".join(self.isa)}, which this CPU lacks'
        return result

    def _times(self, by_runtime: dict[str, list[float]]) -> tuple[str, list[float]]:
        if self.runtime != BEST:
            return self.runtime, by_runtime[self.runtime]
        candidates = [rt for rt in by_runtime if rt not in MEMORY_FORMATS]
        best = min(candidates, key=lambda rt: statistics.median(by_runtime[rt]))
        return best, by_runtime[best]


def finite_ratios(rows: Sequence[BenchRow]) -> bool:
    """Whether some row was measured against its reference and every such row's median
    ratio is finite and positive (``False`` when none was).

    Example:
        >>> row = BenchRow('g', 'a', 'toy', '', 'a')
        >>> finite_ratios([row])  # not measured: nothing to vouch for
        False
        >>> row.ratio_vs_ref = dict(median=1.0, ci_lo=1.0, ci_hi=1.0, p10=1.0, p90=1.0)
        >>> finite_ratios([row])
        True
    """
    ratios = [r.ratio_vs_ref['median'] for r in rows if r.ratio_vs_ref is not None]
    return bool(ratios) and all(math.isfinite(x) and x > 0 for x in ratios)


@dataclass
class Suite:
    """Groups and the targets checked on them.

    A target on ``'eager'`` is checked on eager and again on each runtime run (both rows
    on that runtime); a ``'best'`` one only where some runtime besides eager ran.

    Example:
        >>> suite = Suite([Group(n, 'a', [Candidate('a', 'toy', None, None)])
        ...                for n in ('necks', 'deploy', 'deploy-int8')],
        ...               [Target('t', 'deploy', 'a', 'a', '<=', 1.0)])
        >>> [g.name for g in suite.select(['deploy']).groups]
        ['deploy', 'deploy-int8']
        >>> [t.runtime for t in suite.select(['deploy']).targets_on(['onnxruntime'])]
        ['eager', 'onnxruntime']
        >>> suite.select(['necks']).targets
        []
    """
    groups: list[Group]
    targets: list[Target] = field(default_factory=list)

    def __post_init__(self) -> None:
        names = {g.name: {c.name for c in g.candidates} for g in self.groups}
        if len(names) != len(self.groups):
            raise ValueError('suite: group names must be unique, got '
                             f'{[g.name for g in self.groups]}')
        for t in self.targets:
            if t.group not in names:
                raise ValueError(f'target {t.name!r}: group {t.group!r} is not one of the '
                                 f'suite\'s {list(names)}')
            if not {t.a, t.b} <= names[t.group]:
                raise ValueError(f'target {t.name!r}: rows {t.a!r} and {t.b!r} must be '
                                 f'candidates of group {t.group!r}, {sorted(names[t.group])}')

    def select(self, names: Sequence[str]) -> Suite:
        """The groups called ``name`` or ``name-...`` for each of ``names`` (``ablation``:
        ``ablation-M0.75`` and ``ablation-M1.4``), in suite order, and their targets."""
        def matches(group: Group, name: str) -> bool:
            return group.name == name or group.name.startswith(f'{name}-')

        for name in names:
            if not any(matches(g, name) for g in self.groups):
                raise ValueError(f'no group of the suite is called {name!r} or '
                                 f'{name + "-..."!r}; groups: {[g.name for g in self.groups]}')
        groups = [g for g in self.groups if any(matches(g, n) for n in names)]
        chosen = {g.name for g in groups}
        return Suite(groups, [t for t in self.targets if t.group in chosen])

    def targets_on(self, runtimes: Sequence[str]) -> list[Target]:
        """The targets to check when eager and ``runtimes`` ran."""
        eager = [t for t in self.targets if t.runtime == EAGER]
        return eager + [dataclasses.replace(t, runtime=rt) for rt in runtimes for t in eager] + [
            t for t in self.targets
            if t.runtime in runtimes or (t.runtime == BEST and len(runtimes) > 0)]


def run_files(paths: Sequence[str], settings: Settings,
              progress: Optional[Callable[[str, int], None]] = None
              ) -> tuple[list[dict], dict[str, list[float]]]:
    """Time exported model files (``.onnx``, OpenVINO ``.xml``; e.g. an FP32 graph and its
    INT8 version from ``rfcr-quantize``) in one interleaved run, each on every runtime of
    ``settings.runtimes`` that reads it (its default runtime when there are none), on a
    random ``settings.batch_size x 3 x settings.input_size`` image batch.

    Each row's ratio is against the first file run on the same runtime.

    Returns:
        ``(rows, times)``: a dict per (file, runtime) with ``name``, ``path``, ``runtime``,
        ``ref``, ``latency_ms`` and ``ratio_vs_ref``, and the seconds per round of each
        row by name.
    """
    progress = progress or (lambda msg, steps: None)
    runtimes = [rt for rt in settings.runtimes if rt in FILE_RUNTIMES]
    if settings.runtimes and not runtimes:
        raise ValueError(f'model files run on {FILE_RUNTIMES}, got runtimes '
                         f'{settings.runtimes}')
    image = torch.rand(settings.batch_size, 3, *settings.input_size)
    rows, runners, refs = [], {}, {}
    for path in paths:
        readers = [rt for rt in runtimes if Path(path).suffix.lower() in RUNTIMES[rt].suffixes]
        for rt in readers or ([] if runtimes else [default_runtime(path)]):
            model = load_exported(path, rt, settings.threads)
            feeds = model.feeds((image, ))  # refuses an input the graph does not take
            name = f'{Path(path).name} ({rt})'
            runners[name] = partial(model.run, feeds)
            refs.setdefault(rt, name)
            rows.append(dict(name=name, path=str(path), runtime=rt, ref=refs[rt]))
            progress(f'prepared {name}', 1)
    if not rows:
        raise ValueError(f'none of {list(paths)} runs on {runtimes}')
    times = interleaved_timings(
        runners, repeats=settings.repeats or 30, warmup=settings.warmup,
        on_round=lambda r: progress(f'round {r + 1}', len(runners)))
    for row in rows:
        row['latency_ms'] = _stats_ms(times[row['name']])
        row['ratio_vs_ref'] = _ratio(times[row['name']], times[row['ref']])
    return rows, times
