"""``rfcr-bench``: parameters, MACs, latency and peak memory of detectors and necks, side
by side, with ratios measured in one interleaved run.

What to compare is given explicitly, one of: a suite file (``--suite FILE``: a Python file
whose ``SUITE`` is a :class:`rfcr.analysis.benchmark.Suite`, groups of candidates and the
targets (claims) checked on them; a checkout's benchmarks/suite.py holds the paper's
ablation, the swap-ins, the necks, the folded models, end to end and EfficientNet-B3; no
data, no GPU, random weights), ``--groups`` running some of its groups; ``--configs``,
mmdet configs (the first, or ``--baseline``, is the reference); ``--models``, exported
files (e.g. FP32 and INT8 from ``rfcr-quantize``).

``--runtime`` (ONNX Runtime, OpenVINO, torch.compile) runs every model of every group on
each runtime too, in the same rounds as eager PyTorch, each compared with its reference on
the same runtime. The targets are checked on the measured ratios, per runtime and on each
model's best runtime; ``--profile`` shows where the time goes for every target not met.

Output: a markdown table on stdout; bench.json, bench.csv, bench.md and bench.png in
``--out-dir``. Read ratios, not milliseconds: every ratio compares two models timed in the
same rounds.

Examples::

    rfcr-bench --suite benchmarks/suite.py        # a checkout's suite, eager only
    rfcr-bench --suite benchmarks/suite.py --groups necks --threads 1
    rfcr-bench --suite benchmarks/suite.py --groups detectors deploy --runtime onnxruntime
    rfcr-bench --suite benchmarks/suite.py --runtime installed   # every runtime (make bench)
    rfcr-bench --suite benchmarks/suite.py --groups deploy --runtime openvino compile --profile
    rfcr-bench --suite my_suite.py                # a suite of one's own
    rfcr-bench --models fp32.onnx int8.onnx fp32.xml int8.xml  # exported files, FP32 vs INT8
    rfcr-bench --configs mmdet::yolo/yolov3_mobilenetv2_8xb24-320-300e_coco.py \\
        configs/swapin/yolov3_mobilenetv2-trunc_rfcr_8xb24-320-300e_coco.py
"""
from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import json
import os
import sys
from functools import partial
from pathlib import Path
from typing import Mapping, Optional, Sequence


from rfcr.analysis.benchmark import (FORMAT_CHOICES, MIN_ROUNDS, BenchRow, Candidate, Group,
                                     Settings, Suite, finite_ratios, image, num_steps,
                                     run_group)
from rfcr.analysis.latency import RatioCI, default_threads
from rfcr.deploy.runtime import EXPORTED_RUNTIMES, RUNTIMES, Runner
from rfcr.tools.summary import parse_size
from rfcr.utils.cli import (CfgOptions, add_debug_arg, cli, device, non_negative_int,
                            positive_int)
from rfcr.utils.config import build_model

REPO = Path(__file__).resolve().parents[2]
CROSSCHECK_MIN_MS = 5.0  # --crosscheck: rows at least this long on OpenVINO


def load_suite(path: str | os.PathLike) -> Suite:
    """The ``SUITE`` of the Python file at ``path``, run as ``python path`` would run it:
    its folder first on ``sys.path`` while it loads, so it can import its neighbours."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f'suite file {str(path)!r} not found')
    spec = importlib.util.spec_from_file_location(f'rfcr_bench_suite_{path.stem}', path)
    module = importlib.util.module_from_spec(spec)
    sys.path.insert(0, str(path.resolve().parent))
    try:
        spec.loader.exec_module(module)
    except SyntaxError as e:
        raise ValueError(f'suite file {str(path)!r}: line {e.lineno}: {e.msg}, expected '
                         'Python') from e
    finally:
        sys.path.remove(str(path.resolve().parent))
    suite = getattr(module, 'SUITE', None)
    if not isinstance(suite, Suite):
        raise ValueError(f'suite file {str(path)!r} must define SUITE, a '
                         f'rfcr.analysis.benchmark.Suite; got {type(suite).__name__}')
    return suite


def _config_path(path: str) -> str:
    """``mmdet::`` paths, paths that exist from the current directory, else paths relative
    to the repository."""
    if '::' not in path and not os.path.exists(path) and (REPO / path).exists():
        return str(REPO / path)
    return path


def configs_suite(configs: Sequence[str], baseline: Optional[str],
                  cfg_options: Optional[dict]) -> Suite:
    names = []
    for path in configs:
        stem = Path(path.split('::')[-1]).stem
        name, i = stem, 2
        while name in names:
            name, i = f'{stem}-{i}', i + 1
        names.append(name)
    if baseline is not None and baseline not in names:
        raise ValueError(f'--baseline must name one of the configs ({", ".join(names)}), '
                         f'got {baseline!r}')
    candidates = [Candidate(n, 'configs', partial(build_model, _config_path(p),
                                                  cfg_options=cfg_options), image, source=p)
                  for n, p in zip(names, configs)]
    return Suite([Group('configs', baseline=baseline or names[0], candidates=candidates,
                        note='--configs, ratios vs the baseline config')])


def fraction(text: str) -> float:
    """An argparse ``type``: a number strictly between 0 and 1 (``--precision``)."""
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f'must be a number in (0, 1), e.g. 0.02, got {text!r}')
    return value


def seconds(text: str) -> float:
    """An argparse ``type``: seconds > 0 (``--max-time``)."""
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value > 0:  # NaN too
        raise argparse.ArgumentTypeError(f'must be seconds > 0, e.g. 1800, got {text!r}')
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog='rfcr-bench', description=__doc__.split('\n\n')[0],
        epilog=__doc__.split('\n\n', 1)[1], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--suite', metavar='FILE',
                        help='a Python file defining SUITE, the groups and targets to run '
                        '(see the examples below)')
    parser.add_argument('--groups', nargs='+', metavar='NAME',
                        help='only these groups of the suite: a name selects the group of '
                        'that name and those called NAME-... (e.g. necks deploy; ablation: '
                        'ablation-M0.75 and ablation-M1.4; default: all)')
    parser.add_argument('--configs', nargs='+', metavar='CONFIG',
                        help='benchmark these mmdet configs instead of a suite')
    parser.add_argument('--baseline', help='with --configs: the reference row (config stem); '
                        'default: the first config')
    parser.add_argument('--cfg-options', nargs='+', action=CfgOptions,
                        help='with --configs: key=value overrides applied to every config')
    parser.add_argument('--input-size', type=parse_size, default=(320, 320),
                        help='N or HxW (default: 320)')
    parser.add_argument('--batch-size', type=positive_int, default=1)
    parser.add_argument('--threads', type=positive_int, default=default_threads(),
                        help='CPU threads (default: all cores of this process, %(default)s)')
    parser.add_argument('--device', type=device, default='cpu',
                        help="'cpu' or 'cuda[:i]' (default: cpu)")
    parser.add_argument('--memory-format', choices=FORMAT_CHOICES, default='auto',
                        help='auto: time both, report the faster (default)')
    parser.add_argument('--runtime', nargs='+', choices=EXPORTED_RUNTIMES + ('installed', ),
                        default=[],
                        help='also run every model on these runtimes (CPU): '
                        + ', '.join(RUNTIMES[rt].label for rt in EXPORTED_RUNTIMES)
                        + '; "installed": all of them this environment '
                        'has. They run in the same rounds as PyTorch eager, and each model is '
                        'compared with its reference on the same runtime (default: eager '
                        'only). With --models: the runtimes to run the files on')
    parser.add_argument('--models', nargs='+', metavar='FILE',
                        help='time exported model files (.onnx, OpenVINO .xml; e.g. FP32 and '
                        'INT8) instead, each on every --runtime that reads it (default: '
                        'its own), ratios vs the first file on the same runtime')
    parser.add_argument('--repeats', type=positive_int,
                        help='timed rounds per group (default: each group\'s own, e.g. 30 for '
                        'detectors, 300 for necks, 20 for EfficientNet-B3); with --precision: '
                        'the most')
    parser.add_argument('--precision', type=fraction, metavar='P',
                        help='adaptive rounds: each group goes on (after 10 rounds) until '
                        'every ratio its tables and targets use has a 95%% confidence '
                        'interval within +-P of its median (e.g. 0.02), or its share of '
                        '--max-time is spent; needs --max-time')
    parser.add_argument('--max-time', type=seconds, metavar='S',
                        help='with --precision: the seconds of timed rounds of the whole run, '
                        'shared by the groups (each gets what is left over the groups left)')
    parser.add_argument('--crosscheck', action='store_true',
                        help="time the OpenVINO rows again with OpenVINO's own benchmark_app "
                        '(same IR files, threads and latency hint) and print its ratios next '
                        "to rfcr's (needs --runtime openvino)")
    parser.add_argument('--warmup', type=non_negative_int, default=3,
                        help='untimed rounds (default: 3)')
    parser.add_argument('--profile', action='store_true',
                        help='for every target not met, profile both of its rows on its '
                        'runtime: time per op type, node count, time in short nodes and '
                        'outside nodes (what fragmentation costs)')
    parser.add_argument('--no-peak-memory', action='store_true',
                        help='skip the (profiled) peak-memory pass')
    parser.add_argument('--out-dir', default='work_dirs/bench',
                        help='where bench.json/.csv/.md/.png go (default: work_dirs/bench)')
    parser.add_argument('--no-plot', action='store_true')
    parser.add_argument('--no-progress', action='store_true', help='no progress bar')
    add_debug_arg(parser)
    return parser


def run(argv: Sequence[str] | None = None) -> dict:
    """:func:`main`, returning the results (what bench.json holds)."""
    args = build_parser().parse_args(argv)
    given = [o for o, v in (('--suite', args.suite), ('--configs', args.configs),
                            ('--models', args.models)) if v]
    if len(given) != 1:
        raise SystemExit('rfcr-bench: give what to benchmark, one of --suite FILE, --configs '
                         f'CONFIG... or --models FILE...; got {" and ".join(given) or "none"}')
    if args.groups and not args.suite:
        raise SystemExit('rfcr-bench: --groups picks groups of a --suite FILE; got no --suite')
    missing = [p for p in args.configs or [] if '::' not in p
               and not os.path.isfile(_config_path(p))]
    if missing:
        raise SystemExit(f'rfcr-bench: --configs: no such config file: {", ".join(missing)}')
    if Path(args.out_dir).is_file():
        raise SystemExit(f'rfcr-bench: --out-dir {args.out_dir} is a file, expected a folder')
    if (args.precision is None) != (args.max_time is None):
        raise SystemExit('rfcr-bench: --precision and --max-time go together (rounds until '
                         'every interval is within P, or S seconds), got '
                         f'--precision {args.precision} --max-time {args.max_time}')
    if args.precision is not None and args.repeats is not None and args.repeats < MIN_ROUNDS:
        raise SystemExit(f'rfcr-bench: with --precision, --repeats is the most rounds and must '
                         f'be >= {MIN_ROUNDS}, got {args.repeats}')
    from rfcr.analysis.report import machine_info, markdown, plot, write_outputs

    runtimes = runtimes_asked(args.runtime)
    settings = Settings(input_size=args.input_size, batch_size=args.batch_size,
                        threads=args.threads, device=args.device,
                        memory_format=args.memory_format, warmup=args.warmup,
                        repeats=args.repeats, peak_memory=not args.no_peak_memory,
                        runtimes=runtimes, precision=args.precision, max_time=args.max_time)
    if args.crosscheck and 'openvino' not in runtimes:
        raise SystemExit('rfcr-bench: --crosscheck times the OpenVINO rows with benchmark_app: '
                         f'give --runtime openvino (or installed), got {list(runtimes) or "eager only"}')
    meta = machine_info(args.device, args.threads)
    meta.update(command=' '.join(['rfcr-bench'] + list(argv if argv is not None
                                                         else sys.argv[1:])),
                input_size=list(settings.input_size), batch_size=settings.batch_size,
                memory_format=settings.memory_format, warmup=settings.warmup,
                runtimes=list(runtimes), precision=settings.precision,
                max_time=settings.max_time)
    if args.models:
        return run_models(args, settings, meta)
    suite = (configs_suite(args.configs, args.baseline, args.cfg_options) if args.configs
             else suite_asked(args.suite, args.groups))

    # The peak-memory pass uses torch.profiler; keep Kineto's start/stop chatter off stderr
    # (Kineto reads the variable when the profiler starts), and leave the caller's as it was.
    kineto = os.environ.get('KINETO_LOG_LEVEL')
    os.environ.setdefault('KINETO_LOG_LEVEL', '6')
    from tqdm import tqdm
    steps = [num_steps(g, settings) for g in suite.groups]
    bar = tqdm(total=None if None in steps else sum(steps), file=sys.stderr,
               disable=args.no_progress, unit='forward', dynamic_ncols=True, mininterval=1.0)

    def progress(message: str, steps: int) -> None:
        bar.set_description(message[:48])
        bar.update(steps)

    asked = suite.targets_on(runtimes)
    rows, times, macs, profiles, groups, crosschecks = [], {}, {}, [], [], []
    spent = 0.0  # seconds of timed rounds so far (preparing and exporting do not count)
    try:
        for i, group in enumerate(suite.groups):
            group_settings = settings
            if settings.max_time is not None:  # what is left, shared by the groups left
                left = max(settings.max_time - spent, 0.0)
                group_settings = dataclasses.replace(
                    settings, max_time=max(left / (len(suite.groups) - i), 1e-3))
            keep = args.profile or args.crosscheck
            timed = {} if keep else None  # the group's runners, kept to profile them
            group_targets = [t for t in asked if t.group == group.name]
            group_rows, group_times, rounds = run_group(group, group_settings, progress, timed,
                                                        group_targets)
            rows += group_rows
            times[group.name] = group_times
            spent += rounds['seconds']
            macs[group.name] = {r.name: r.macs.get('total') for r in group_rows if r.macs}
            groups.append(dict(name=group.name, baseline=group.baseline, note=group.note,
                               repeats=settings.repeats or group.repeats, rounds=rounds))
            checked = [t.check(times, macs) for t in group_targets]
            if args.profile:  # the group's targets not met, on the runners just timed
                profiles += profile_unmet(suite, group_rows, checked, settings, timed)
            if args.crosscheck:
                crosschecks += crosscheck_group(group_rows, timed, settings.threads)
    finally:
        bar.close()
        if kineto is None:
            os.environ.pop('KINETO_LOG_LEVEL', None)

    if hasattr(os, 'getloadavg'):
        meta['load_average_end'] = [round(x, 2) for x in os.getloadavg()]
    meta['finite_ratios'] = finite_ratios(rows)
    targets = [t.check(times, macs) for t in asked]
    table = markdown(rows, groups, targets, meta)
    result = dict(meta=meta, groups=groups, rows=rows, targets=targets,
                  timings_s={g: {n: t for n, t in ts.items()} for g, ts in times.items()})
    if args.crosscheck:
        from rfcr.analysis.report import crosscheck_table
        result['crosscheck'] = crosschecks
        table += '\n\n' + crosscheck_table(crosschecks)
    if args.profile:
        result['profiles'] = [p.as_dict() for p in profiles]
        if profiles:
            table += '\n\n' + profiles_section(profiles, targets)
    out_dir = Path(args.out_dir)
    paths = write_outputs(out_dir, result, table)
    if not args.no_plot:
        paths['png'] = plot(rows, out_dir / 'bench.png',
                            title=f'{meta["cpu"]}, {args.threads} thread(s), input '
                                  f'{settings.input_size[0]}x{settings.input_size[1]}, batch '
                                  f'{settings.batch_size}')
    print(table)
    print('\n' + ', '.join(f'{k}: {p}' for k, p in paths.items()), file=sys.stderr)
    return result


def suite_asked(path: str, groups: Optional[Sequence[str]]) -> Suite:
    """``--suite``'s file, only ``--groups`` if given; what is wrong said as a CLI error."""
    if not Path(path).is_file():
        raise SystemExit(f'rfcr-bench: --suite {path}: no such file')
    suite = load_suite(path)
    try:
        return suite.select(groups) if groups else suite
    except ValueError as e:
        raise SystemExit(f'rfcr-bench: --groups: {e}') from None


def needs_profile(target: dict) -> bool:
    """Whether a checked target is profiled (``--profile``): not met or undecided, or its
    interval excludes the MAC ratio (where the time goes beyond arithmetic)."""
    if target.get('value') is None or target.get('verdict') == 'not applicable here':
        return False
    mac, lo, hi = target.get('mac_ratio'), target.get('ci_lo'), target.get('ci_hi')
    outside = None not in (mac, lo, hi) and not lo <= mac <= hi
    return target['verdict'] != 'met' or outside


def profile_unmet(suite: Suite, rows: Sequence[BenchRow], targets: Sequence[dict],
                  settings: Settings,
                  runners: Optional[Mapping[tuple[str, str, str], Runner]] = None) -> list:
    """Profiles of both rows of every target :func:`needs_profile` picks, each on the
    runtime it was judged on (a ``best`` target: each row's best runtime), every (row,
    runtime) once, all in interleaved blocks (:func:`~rfcr.analysis.profile.
    profile_interleaved`, so that their walls pair as the rounds do): on the runner that
    was timed where ``runners`` (``run_group``'s, ``(group, row, runtime) -> Runner``) has
    it, else on one built anew."""
    from rfcr.analysis.benchmark import candidate_runner
    from rfcr.analysis.profile import profile_interleaved
    candidates = {(g.name, c.name): c for g in suite.groups for c in g.candidates}
    formats = {(r.group, r.name): r.memory_format or 'contiguous' for r in rows}
    wanted = {}
    for t in targets:
        if not needs_profile(t):
            continue
        for name, rt in zip((t['a'], t['b']), t.get('runtimes') or [t['runtime']] * 2):
            key = (t['group'], name, rt)
            if key not in wanted:
                runner = (runners or {}).get(key) or candidate_runner(
                    candidates[key[:2]], rt, settings, formats[key[:2]])
                wanted[key] = (runner, rt, name)
    if not wanted:
        return []
    print(f'rfcr-bench: profiling {", ".join(f"{n} on {rt}" for _, n, rt in wanted)}',
          file=sys.stderr)
    profiles = profile_interleaved(wanted)
    for (group, _, _), profile in profiles.items():
        profile.group = group
    return list(profiles.values())


def profiles_section(profiles: Sequence, targets: Sequence[dict]) -> str:
    """The profiles table, then, for each profiled target with a MAC ratio, where its
    rows' time differs from what the MAC ratio predicts."""
    from rfcr.analysis.latency import ratio_ci
    from rfcr.analysis.profile import SHORT_NODE_US, format_difference, format_profiles
    from rfcr.analysis.report import interval
    text = ('**Profiles** of the rows of every target not met, undecided, or whose interval '
            'excludes its MAC ratio, on its runtime (one inference, averaged over 20 '
            'profiled runs; eager in the row\'s faster memory format). Nodes shorter than '
            f'{SHORT_NODE_US:g} µs and time outside every node are what fragmentation costs; '
            'torch.compile\'s own kernels are not itemized and count as outside.\n\n'
            + format_profiles(profiles))
    by_key = {(p.group, p.name, p.runtime): p for p in profiles}
    for t in targets:
        if not needs_profile(t) or t.get('mac_ratio') is None:
            continue
        runtimes = t.get('runtimes') or [t['runtime'], t['runtime']]
        pa, pb = (by_key.get((t['group'], name, rt))
                  for name, rt in zip((t['a'], t['b']), runtimes))
        if pa is None or pb is None:
            continue
        expected = 1 / t['mac_ratio'] if t['measure'] == 'speed-up' else t['mac_ratio']
        walls = (pb.walls, pa.walls) if t['measure'] == 'speed-up' else (pa.walls, pb.walls)
        profiled = ratio_ci(*walls).as_dict()
        rounds = dict(median=t['value'], ci_lo=t['ci_lo'], ci_hi=t['ci_hi'])
        overlap = None not in (profiled['ci_lo'], t['ci_lo']) and (
            profiled['ci_lo'] <= t['ci_hi'] and t['ci_lo'] <= profiled['ci_hi'])
        t['profiled'] = dict(profiled, agrees=overlap)
        text += (f'\n\n*{t["name"]}* ({t["runtime"]}): {interval(rounds)} in the rounds, '
                 f'{interval(profiled)} profiled (blocks of runs, profiler on; the intervals '
                 f'{"overlap" if overlap else "do not overlap"}), MAC ratio '
                 f'{t["mac_ratio"]:.3f}. Where '
                 f'{t["a"]}\'s time departs from {expected:.3f} x {t["b"]}\'s:\n\n'
                 + format_difference(pa, pb, expected))
    return text


def crosscheck_group(rows: Sequence[BenchRow], runners: Mapping[tuple[str, str, str], Runner],
                     threads: int) -> list[dict]:
    """``--crosscheck``: each OpenVINO row with a ratio to its reference, timed again by
    OpenVINO's benchmark_app on the same IR files (:mod:`rfcr.analysis.crosscheck`), its
    ratio beside rfcr's interval. Rows of less than CROSSCHECK_MIN_MS are left out: rfcr's
    calls pass arrays through Python (about 0.3 ms), which benchmark_app does not count,
    and on such short models that alone moves the ratio by more than the 5 % allowed."""
    from rfcr.analysis.crosscheck import agrees, crosscheck
    pairs, cis = [], []
    for r in rows:
        entry = r.runtimes.get('openvino', {})
        ci = entry.get('ratio_vs_ref')
        if ci is None or r.ref == r.name or ci['ci_lo'] is None:  # no interval: no check
            continue
        ref = next(x for x in rows if x.name == r.ref)
        if min(entry['latency_ms']['median'],
               ref.runtimes['openvino']['latency_ms']['median']) < CROSSCHECK_MIN_MS:
            continue
        a, b = (runners.get((r.group, name, 'openvino')) for name in (r.name, r.ref))
        if a is None or b is None:
            continue
        pairs.append((r.name, a.model.path, r.ref, b.model.path))
        cis.append((r.group, ci))
    print(f'rfcr-bench: benchmark_app on {len(pairs)} OpenVINO pair(s)', file=sys.stderr)
    checks = crosscheck(pairs, threads, runs=2) if pairs else []
    for check, (group, ci) in zip(checks, cis):
        check.update(group=group, rfcr=dict(median=ci['median'], ci_lo=ci['ci_lo'],
                                             ci_hi=ci['ci_hi']))
        check['agrees'] = agrees(check['ratio'], RatioCI(ci['median'], ci['ci_lo'],
                                                         ci['ci_hi'], ci['p10'], ci['p90'],
                                                         ci['n']))
    return checks


def runtimes_asked(names: Sequence[str]) -> tuple[str, ...]:
    """``--runtime``'s names, ``installed`` expanded; a runtime this environment cannot run
    is refused with what to install."""
    from rfcr.deploy.runtime import available_runtimes
    available = available_runtimes()
    runtimes = []
    for name in names:
        for rt in available if name == 'installed' else [name]:
            if rt not in available:
                raise SystemExit(f'rfcr-bench: --runtime {rt} needs '
                                 f'{RUNTIMES[rt].install}; this environment runs '
                                 f'{list(available) or "none"}')
            if rt not in runtimes:
                runtimes.append(rt)
    return tuple(runtimes)


def run_models(args: argparse.Namespace, settings: Settings, meta: dict) -> dict:
    """``--models``: exported files side by side (:func:`rfcr.analysis.benchmark.run_files`)."""
    from rfcr.analysis.benchmark import run_files
    from rfcr.analysis.report import files_markdown
    for path in args.models:
        if not os.path.isfile(path):
            raise SystemExit(f'rfcr-bench: --models: {path}: no such file')
    try:
        rows, times = run_files(args.models, settings)
    except ValueError as e:
        raise SystemExit(f'rfcr-bench: --models: {e}') from None
    if hasattr(os, 'getloadavg'):
        meta['load_average_end'] = [round(x, 2) for x in os.getloadavg()]
    meta['repeats_note'] = str(len(next(iter(times.values()))))
    table = files_markdown(rows, meta)
    result = dict(meta=meta, rows=rows, timings_s=times)
    out_dir = Path(args.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / 'models.json').write_text(json.dumps(result, indent=1) + '\n')
    (out_dir / 'models.md').write_text(table + '\n')
    print(table)
    print(f'\njson: {out_dir / "models.json"}, md: {out_dir / "models.md"}', file=sys.stderr)
    return result


def main(argv: Sequence[str] | None = None) -> None:
    cli('rfcr-bench', run, argv)  # console scripts sys.exit() what main returns: nothing


if __name__ == '__main__':
    main()
