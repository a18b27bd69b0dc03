"""An independent check of rfcr's OpenVINO latency ratios: OpenVINO's own ``benchmark_app``.

rfcr times OpenVINO models in interleaved rounds inside its own process
(:func:`rfcr.analysis.latency.interleaved_timings` over the runtime table's runners) and
reports per-round paired ratios with a confidence interval
(:func:`rfcr.analysis.latency.ratio_ci`). Here ``benchmark_app``, the benchmark tool shipped
with the ``openvino`` package (the ``benchmark_app`` console script of this environment,
nothing downloaded), times the same files: the OpenVINO IR (``.xml``) or ONNX file that an
OpenVINO runner loaded (``runner.model.path``), with the same settings, and
:func:`crosscheck` gives its latency ratio of two files.

What is compared: the median latency of one inference, ``a``'s over ``b``'s.

Why it is independent: ``benchmark_app`` is OpenVINO's own timer, not rfcr's. It runs in
its own process (no PyTorch, no rfcr loaded), compiles the file itself, fills its own input
tensors once and times its own inference loop (``InferRequest.latency`` of each
synchronous ``infer()``), and computes its own median. What is shared is only what must
be, so that the two measure the same thing: the file, the device (CPU) and the compile
settings of :func:`rfcr.deploy.session.openvino_model` (``-hint latency``: one synchronous
request, no asynchronous pipelining; one stream; ``INFERENCE_NUM_THREADS``; ``f32``
inference precision; the inputs' own element types, not the ``u8`` that ``benchmark_app``
gives 3-channel image inputs by default). These settings are not trusted to the command
line: :func:`benchmark_app_latency` reads back the properties ``benchmark_app`` says its
compiled model has and raises unless each equals the one of rfcr's own compile of the
file.

How the command line gets there: ``benchmark_app`` refuses ``-nstreams`` and ``-nthreads``
together with ``-hint latency`` (a rule of its UI, not of OpenVINO), so the stream and
thread counts go in a ``-load_config`` file. The command::

    benchmark_app -m FILE -d CPU -hint latency -api sync -infer_precision f32 -ip f32
        -load_config CONFIG.json -t SECONDS -report_type no_counters -json_stats
        -report_folder DIR

with ``CONFIG.json`` ``{"CPU": {"NUM_STREAMS": "1", "INFERENCE_NUM_THREADS": "N"}}``.
The numbers come from its JSON report (``benchmark_report.json``), not from its console
text. That report rounds latencies to 0.01 ms (0.5 % of a 1 ms model at worst).

In absolute terms ``benchmark_app`` is faster than rfcr's runner by about 0.3-0.4 ms a
call (measured on a 2-core EPYC, OpenVINO 2026.4): its latency is ``InferRequest.latency``
of ``infer()`` on input tensors filled once, while rfcr's wall clock also spans Python's
call of ``infer`` (~0.1 ms) and the passing of the input arrays to it and of the outputs
back (~0.1-0.3 ms, in OpenVINO's Python data dispatcher), and rfcr's interleaving of models
leaves each to start on caches the other used. A constant overhead pulls rfcr's ratios
toward 1: by ~10 % for models of 1-2 ms, ~3 % at 10 ms, < 1 % from ~20 ms; so the check is
meant for models of tens of milliseconds (detectors), not for micro-models.

And ``benchmark_app`` times seconds-long blocks, one file at a time, so a change of load
on a shared machine can hit one file's run only; rfcr's rounds pair the files within
milliseconds. :func:`crosscheck` pairs runs in couples and takes a median over them, but
on a loaded machine its ratio is the noisier of the two.

Example:
    >>> from rfcr.analysis.latency import RatioCI
    >>> ci = RatioCI(median=2.0, lo=1.9, hi=2.1, p10=1.8, p90=2.2, n=100)
    >>> [round(x, 4) for x in widened(ci)]
    [1.8095, 2.205]
    >>> agrees(2.2, ci), agrees(2.21, ci), agrees(1 / 2.2, RatioCI(0.5, 1 / 2.1, 1 / 1.9,
    ...                                                            0.45, 0.55, 100))
    (True, False, True)
"""
from __future__ import annotations

import json
import math
import os
import re
import shlex
import statistics
import subprocess
import sys
import tempfile
from importlib import metadata
from pathlib import Path
from typing import Iterable, Mapping, Optional, Sequence

from ..deploy.session import openvino_model

__all__ = ['CHECKED_PROPERTIES', 'HINTS', 'SUFFIXES', 'agrees', 'benchmark_app',
           'benchmark_app_latency', 'crosscheck', 'parse_compiled_properties',
           'parse_report', 'run_benchmark_app', 'widened']

SUFFIXES = ('.xml', '.onnx')  # what benchmark_app and rfcr's OpenVINO runtime both read
HINTS = ('latency', 'none')  # benchmark_app's hints that time one synchronous request
# Properties of the compiled model that must be the same in benchmark_app as in rfcr.
CHECKED_PROPERTIES = ('PERFORMANCE_HINT', 'NUM_STREAMS', 'INFERENCE_NUM_THREADS',
                      'INFERENCE_PRECISION_HINT', 'EXECUTION_MODE_HINT', 'ENABLE_CPU_PINNING',
                      'ENABLE_HYPER_THREADING', 'SCHEDULING_CORE_TYPE', 'PERF_COUNT')
# benchmark_app's JSON report: execution_results key -> ours (values in ms, as strings).
REPORT_KEYS = {'latency (ms)': 'median_ms', 'avg latency': 'average_ms',
               'min latency': 'min_ms', 'max latency': 'max_ms',
               'total number of iterations': 'iterations',
               'total execution time (ms)': 'duration_ms'}
DEFAULT_SECONDS = 1  # benchmark_app -t (whole seconds): 50 iterations of a 20 ms model
RUNS = 4  # benchmark_app runs per file in crosscheck
TIMEOUT_S = 120  # for benchmark_app's start and compile, beyond its -t seconds


def benchmark_app() -> list[str]:
    """The command that starts this environment's ``benchmark_app`` (the console script of
    the ``openvino`` package beside this Python, else that entry point run by this Python):
    the same OpenVINO build that rfcr's runners use.

    Raises:
        RuntimeError: ``openvino`` (and so its ``benchmark_app``) is not installed.
    """
    try:
        dist = metadata.distribution('openvino')
    except metadata.PackageNotFoundError:
        raise RuntimeError('benchmark_app is missing: it comes with the openvino package, '
                           'which is not installed in this environment '
                           f'({sys.executable}); pip install openvino') from None
    entry = next((e for e in dist.entry_points
                  if e.group == 'console_scripts' and e.name == 'benchmark_app'), None)
    if entry is None:
        raise RuntimeError(f'benchmark_app is missing: openvino {dist.version} installs no '
                           'benchmark_app console script')
    script = Path(sys.executable).parent / 'benchmark_app'
    if script.is_file() and os.access(script, os.X_OK):
        return [os.fspath(script)]
    module, _, attr = entry.value.partition(':')
    return [sys.executable, '-c', f'import sys; from {module} import {attr}; '
            f'sys.argv[0] = "benchmark_app"; sys.exit({attr}())']


def _check_path(path: str | os.PathLike, name: str = 'path') -> str:
    path = os.fspath(path)
    suffix = Path(path).suffix
    if suffix not in SUFFIXES:
        raise ValueError(f'{name} must be an OpenVINO IR or ONNX file (suffix '
                         f'{" or ".join(SUFFIXES)}), got {path!r}')
    if not os.path.isfile(path):
        raise FileNotFoundError(f'{name}: no such file {path!r} (an OpenVINO model file, '
                                f'{" or ".join(SUFFIXES)}, to time with benchmark_app)')
    if suffix == '.xml' and not os.path.isfile(Path(path).with_suffix('.bin')):
        raise FileNotFoundError(f'{name}: the OpenVINO IR {path!r} has no weights file '
                                f'{os.fspath(Path(path).with_suffix(".bin"))!r} beside it')
    return path


def _failure(stdout: str, stderr: str, report: Optional[Mapping]) -> str:
    """The one line saying why benchmark_app failed: its report's error, else the first
    ``[ ERROR ]`` line it printed (its log goes to stdout), else stderr's last line."""
    error = (report or {}).get('execution_results', {}).get('error')
    if error:
        return str(error).strip().splitlines()[0]
    for line in stdout.splitlines():
        if line.startswith('[ ERROR ]') and line[9:].strip():
            return line[9:].strip()
    for text in (stderr, stdout):
        lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
        if lines:
            return lines[-1]
    return 'no output'


def run_benchmark_app(args: Sequence[str], timeout: float = TIMEOUT_S
                      ) -> tuple[dict, str, str]:
    """Run ``benchmark_app`` with ``args`` and its JSON report in a temporary folder
    (removed after): its report (``benchmark_report.json`` as a dict), its stdout and the
    exact command run (``-report_folder`` naming the folder since removed).

    Raises:
        RuntimeError: benchmark_app is missing, failed (the line saying why), ran past
            ``timeout`` seconds or wrote no report.
    """
    with tempfile.TemporaryDirectory(prefix='rfcr-benchmark-app-') as folder:
        cmd = benchmark_app() + [*map(str, args), '-report_type', 'no_counters',
                                 '-json_stats', '-report_folder', folder]
        command = shlex.join(cmd)
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                                  stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired:
            raise RuntimeError(f'benchmark_app ran past timeout={timeout} s: {command}'
                               ) from None
        report_path = os.path.join(folder, 'benchmark_report.json')
        report = None
        if os.path.isfile(report_path):
            with open(report_path) as f:
                report = json.load(f)
        if proc.returncode != 0 or report is None or 'error' in report.get(
                'execution_results', {}):
            why = _failure(proc.stdout, proc.stderr, report)
            raise RuntimeError(f'benchmark_app failed (exit status {proc.returncode}): {why}\n'
                               f'  command: {command}')
    return report, proc.stdout, command


def parse_report(report: Mapping) -> dict:
    """Latencies (ms) and counts from ``benchmark_app``'s JSON report (``-json_stats``, the
    default 50th percentile): ``median_ms``, ``average_ms``, ``min_ms``, ``max_ms``,
    ``duration_ms`` (the timed loop), ``iterations``.

    Raises:
        ValueError: a value is missing or not a number (naming it and what was found).
    """
    results = report.get('execution_results') if isinstance(report, Mapping) else None
    if not isinstance(results, Mapping):
        found = sorted(report) if isinstance(report, Mapping) else type(report).__name__
        raise ValueError(f'benchmark_app report: expected an "execution_results" section, '
                         f'found {found}')
    out = {}
    for key, name in REPORT_KEYS.items():
        if key not in results:
            raise ValueError(f'benchmark_app report: execution_results has no {key!r} '
                             f'(expected {sorted(REPORT_KEYS)}; found {sorted(results)})')
        try:
            value = float(results[key])
        except (TypeError, ValueError):
            raise ValueError(f'benchmark_app report: {key!r} must be a number, got '
                             f'{results[key]!r}') from None
        out[name] = int(value) if name == 'iterations' else value
    if out['iterations'] < 1 or out['median_ms'] <= 0:
        raise ValueError(f'benchmark_app report: expected at least one iteration and a '
                         f'positive median latency, got {out["iterations"]} iterations, '
                         f'median {out["median_ms"]} ms')
    return out


_PROPERTY = re.compile(r'^\[ INFO \]   ([A-Z][A-Z0-9_]*):(?: (.*))?$')


def parse_compiled_properties(stdout: str) -> dict[str, str]:
    """The compiled model's properties that ``benchmark_app`` prints (its step 8, lines
    ``[ INFO ]   NAME: value`` after ``[ INFO ] Model:``), as text; a device's own block
    (``[ INFO ]   CPU:`` and the lines indented below it) is left out.

    Raises:
        ValueError: no such block in ``stdout``.
    """
    lines = stdout.splitlines()
    try:
        start = lines.index('[ INFO ] Model:') + 1
    except ValueError:
        raise ValueError("benchmark_app's output has no '[ INFO ] Model:' line (the compiled "
                         "model's properties, its step 8); it printed "
                         f'{len(lines)} lines') from None
    props = {}
    for line in lines[start:]:
        match = _PROPERTY.match(line)
        if match is not None:
            if match[2] is not None:  # else a device's name, its properties below
                props[match[1]] = match[2].strip()
        elif not line.startswith('[ INFO ]     '):  # nor a device's property: the end
            break
    return props


def _expected(compiled, hint: str) -> dict[str, str]:
    """:data:`CHECKED_PROPERTIES` of rfcr's compiled model, printed as benchmark_app does."""
    keys = [k for k in CHECKED_PROPERTIES if not (k == 'PERFORMANCE_HINT' and hint == 'none')]
    return {k: str(compiled.get_property(k)) for k in keys}


def benchmark_app_latency(path: str | os.PathLike, threads: Optional[int],
                          seconds: int = DEFAULT_SECONDS, hint: str = 'latency') -> dict:
    """``benchmark_app``'s latency of the OpenVINO file ``path`` on the CPU, compiled as
    rfcr's OpenVINO runner compiles it (:func:`rfcr.deploy.session.openvino_model`): one
    stream, ``threads`` threads (``None``: OpenVINO's default, as rfcr's), ``f32``, one
    synchronous request, the inputs' own element types; timed for ``seconds`` seconds
    after one warm-up inference.

    Args:
        path: A ``.xml`` IR (``.bin`` beside it) or ``.onnx`` file with static input
            shapes (what rfcr's exports are).
        threads: ``INFERENCE_NUM_THREADS`` (rfcr's ``runner.model.threads``).
        seconds: ``benchmark_app -t`` (whole seconds, >= 1).
        hint: ``'latency'`` (rfcr's ``PERFORMANCE_HINT``) or ``'none'`` (no hint; the
            stream and thread counts alone).

    Returns:
        ``median_ms``, ``average_ms``, ``min_ms``, ``max_ms``, ``duration_ms``,
        ``iterations`` (:func:`parse_report`), ``path``, ``threads``, ``seconds``, ``hint``,
        ``command`` (the exact command run), ``config`` (what its ``-load_config`` file
        held) and ``properties`` (the compiled model's, as benchmark_app printed them).

    Raises:
        ValueError: a bad argument, or a dynamic input shape.
        FileNotFoundError: ``path`` (or its ``.bin``) does not exist.
        RuntimeError: benchmark_app is missing or failed (the line saying why), or compiled
            the model otherwise than rfcr does (the properties that differ).
    """
    path = _check_path(path)
    _check_settings(threads, seconds, hint)
    return _latency(path, threads, seconds, hint, _rfcr_compile(path, threads, hint))


def _check_settings(threads: Optional[int], seconds: int, hint: str) -> None:
    if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int)
                                or threads < 1):
        raise ValueError(f'threads must be a positive int or None, got {threads!r}')
    if isinstance(seconds, bool) or not isinstance(seconds, int) or seconds < 1:
        raise ValueError(f'seconds must be a whole number of seconds >= 1 (benchmark_app '
                         f'-t takes an int), got {seconds!r}')
    if hint not in HINTS:
        raise ValueError(f'hint must be one of {HINTS} (one synchronous request, as rfcr '
                         f'times), got {hint!r}')


def _rfcr_compile(path: str, threads: Optional[int], hint: str) -> tuple[list[str], dict]:
    """From rfcr's own compile of ``path``: benchmark_app's input precision options (the
    inputs' own element types) and the properties its compiled model must have."""
    benchmark_app()  # missing: fail before compiling anything
    compiled = openvino_model(path, threads)
    dynamic = {i.get_any_name(): str(i.get_partial_shape()) for i in compiled.inputs
               if i.get_partial_shape().is_dynamic}
    if dynamic:
        raise ValueError(f'path {path!r} has dynamic input shapes {dynamic}; expected static '
                         'shapes (rfcr exports static graphs), which benchmark_app times '
                         'without -shape / -data_shape')
    types = [i.get_element_type().get_type_name() for i in compiled.inputs]
    if len(set(types)) == 1:
        precision = ['-ip', types[0]]
    else:
        precision = ['-iop', ','.join(f'{i.get_any_name()}:{t}'
                                      for i, t in zip(compiled.inputs, types))]
    return precision, _expected(compiled, hint)


def _latency(path: str, threads: Optional[int], seconds: int, hint: str,
             rfcr_compile: tuple[list[str], dict]) -> dict:
    precision, expected = rfcr_compile
    config = {'NUM_STREAMS': '1'}
    if threads is not None:
        config['INFERENCE_NUM_THREADS'] = str(threads)
    with tempfile.TemporaryDirectory(prefix='rfcr-benchmark-app-config-') as folder:
        config_path = os.path.join(folder, 'config.json')
        with open(config_path, 'w') as f:
            json.dump({'CPU': config}, f)
        report, stdout, command = run_benchmark_app(
            ['-m', path, '-d', 'CPU', '-hint', hint, '-api', 'sync', '-infer_precision',
             'f32', *precision, '-load_config', config_path, '-t', seconds],
            timeout=TIMEOUT_S + 2 * seconds)
    props = parse_compiled_properties(stdout)
    missing = [k for k in expected if k not in props]
    if missing:
        raise RuntimeError(f"benchmark_app did not print the compiled model's {missing} "
                           f'(found {sorted(props)}); cannot check it compiled {path!r} as '
                           f'rfcr does\n  command: {command}')
    differ = {k: (props[k], v) for k, v in expected.items() if props[k] != v}
    if differ:
        raise RuntimeError('benchmark_app compiled the model otherwise than rfcr does '
                           '(property: benchmark_app\'s, rfcr\'s): '
                           + ', '.join(f'{k}: {a!r}, {b!r}' for k, (a, b) in differ.items())
                           + f'\n  command: {command}')
    api = report.get('configuration_setup', {}).get('API')
    if api != 'sync':
        raise RuntimeError(f"benchmark_app's report says API {api!r}, expected 'sync'\n"
                           f'  command: {command}')
    return dict(parse_report(report), path=path, threads=threads, seconds=seconds, hint=hint,
                command=command, config={'CPU': config},
                properties={k: props[k] for k in expected})


def crosscheck(pairs: Iterable[tuple[str, str | os.PathLike, str, str | os.PathLike]],
               threads: Optional[int], seconds: int = DEFAULT_SECONDS, runs: int = RUNS,
               hint: str = 'latency') -> list[dict]:
    """``benchmark_app``'s latency ratio ``a / b`` of each pair of OpenVINO files.

    Each file of a pair is timed ``runs`` times (:func:`benchmark_app_latency`, one
    process each), alternately in couples, a b, b a, a b, b a, ...: each couple's ratio
    compares two runs seconds apart, so load that comes and goes on a shared machine hits
    both sides of most couples alike (as rfcr's interleaved rounds do, on a coarser time
    scale), and a couple caught by a change of load is outvoted by the others. The couples
    alternate which file runs first, so that a steady drift (a load building up, a clock
    slowing down) favours neither file. The ratio is the median of the couples' ratios;
    one run of ``benchmark_app`` is too coarse to pair (seconds, not milliseconds), so
    ``runs`` of 4 or more keep one disturbed couple from deciding it.

    Args:
        pairs: ``(name_a, path_a, name_b, path_b)`` each: a row and its reference.
        threads, seconds, hint: As :func:`benchmark_app_latency`.
        runs: benchmark_app runs per file, even, >= 2 (``runs`` couples).

    Returns:
        One JSON-friendly dict per pair: ``name_a``, ``path_a``, ``name_b``, ``path_b``,
        ``ratio`` (the median of ``run_ratios``), ``run_ratios`` (each couple's
        ``median_ms`` of a over that of b, in time order), ``median_ms_a`` and
        ``median_ms_b`` (the median of each file's runs' medians), ``threads``,
        ``seconds``, ``hint``, and ``runs_a`` / ``runs_b`` (each run's
        :func:`benchmark_app_latency` dict, command included, in time order). A pair takes
        about ``2 * runs * (seconds + 1)`` seconds.

    Raises:
        As :func:`benchmark_app_latency`; every path is checked before anything runs.
    """
    if isinstance(runs, bool) or not isinstance(runs, int) or runs < 2 or runs % 2:
        raise ValueError(f'runs must be an even int >= 2 (couples a b, b a: a steady drift '
                         f'favours neither file), got {runs!r}')
    pairs = [tuple(p) for p in pairs]
    for i, pair in enumerate(pairs):
        if len(pair) != 4:
            raise ValueError(f'pairs[{i}] must be (name_a, path_a, name_b, path_b), got '
                             f'{pair!r}')
        _check_path(pair[1], f'pairs[{i}] path_a')
        _check_path(pair[3], f'pairs[{i}] path_b')
    _check_settings(threads, seconds, hint)
    compiled = {}  # path -> _rfcr_compile's, once per file
    for _, path_a, _, path_b in pairs:
        for path in map(os.fspath, (path_a, path_b)):
            if path not in compiled:
                compiled[path] = _rfcr_compile(path, threads, hint)
    results = []
    for name_a, path_a, name_b, path_b in pairs:
        runs_a, runs_b = [], []
        for couple in range(runs):
            for which in ('ab' if couple % 2 == 0 else 'ba'):
                path = os.fspath(path_a if which == 'a' else path_b)
                (runs_a if which == 'a' else runs_b).append(
                    _latency(path, threads, seconds, hint, compiled[path]))
        run_ratios = [ra['median_ms'] / rb['median_ms'] for ra, rb in zip(runs_a, runs_b)]
        results.append(dict(
            name_a=name_a, path_a=os.fspath(path_a), name_b=name_b, path_b=os.fspath(path_b),
            ratio=statistics.median(run_ratios), run_ratios=run_ratios,
            median_ms_a=statistics.median(r['median_ms'] for r in runs_a),
            median_ms_b=statistics.median(r['median_ms'] for r in runs_b),
            threads=threads, seconds=seconds, hint=hint, runs_a=runs_a, runs_b=runs_b))
    return results


def widened(ci, widen: float = 0.05) -> tuple[float, float]:
    """``ci``'s interval (``ci.lo``, ``ci.hi``: a :class:`~rfcr.analysis.latency.RatioCI`)
    widened by the factor ``1 + widen`` on each side: ``(lo / (1 + widen),
    hi * (1 + widen))``. Multiplicative, not ``lo - widen``: a ratio and its inverse are
    widened alike (``b / a``'s bounds are the inverses of ``a / b``'s), and 5 % means 5 %
    of the ratio whatever its size.

    Raises:
        ValueError: ``widen`` is negative, or ``ci`` has no finite interval (too few
            rounds: :func:`~rfcr.analysis.latency.median_ci_ranks`).
    """
    if not (isinstance(widen, (int, float)) and math.isfinite(widen) and widen >= 0):
        raise ValueError(f'widen must be a finite number >= 0 (0.05: 5 %), got {widen!r}')
    lo, hi = ci.lo, ci.hi
    if not (math.isfinite(lo) and math.isfinite(hi) and 0 < lo <= hi):
        raise ValueError(f'ci must have a finite, positive interval lo <= hi, got lo={lo!r}, '
                         f'hi={hi!r} over n={getattr(ci, "n", "?")} rounds (95 % needs at '
                         'least 6)')
    return lo / (1 + widen), hi * (1 + widen)


def agrees(bench_ratio: float, ci, widen: float = 0.05) -> bool:
    """Whether ``benchmark_app``'s ratio ``bench_ratio`` lies within rfcr's confidence
    interval ``ci`` of the same ratio, :func:`widened` by ``widen`` (bounds included):
    ``ci.lo / (1 + widen) <= bench_ratio <= ci.hi * (1 + widen)``.

    The widening allows for what differs between the two measurements by design: they run
    at different moments of a shared machine, rfcr's times include its Python input and
    output copies (a constant that pulls its ratios toward 1), and benchmark_app's report
    rounds latencies to 0.01 ms.
    """
    if not (isinstance(bench_ratio, (int, float)) and math.isfinite(bench_ratio)
            and bench_ratio > 0):
        raise ValueError(f'bench_ratio must be a finite number > 0, got {bench_ratio!r}')
    lo, hi = widened(ci, widen)
    return lo <= bench_ratio <= hi
