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
import importlib.util
import json
import os
import sys
from functools import partial
from pathlib import Path
from typing import Mapping, Optional, Sequence

import torch
from mmengine.config import DictAction

from rfcr.analysis.benchmark import (FORMAT_CHOICES, BenchRow, Candidate, Group, Settings,
                                     Suite, finite_ratios, image, num_steps, run_group)
from rfcr.analysis.latency import default_threads
from rfcr.deploy.runtime import EXPORTED_RUNTIMES, RUNTIMES, Runner
from rfcr.tools.summary import parse_size, positive_int
from rfcr.utils.config import build_model

REPO = Path(__file__).resolve().parents[2]


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
    finally:
        sys.path.remove(str(path.resolve().parent))
    suite = getattr(module, 'SUITE', None)
    if not isinstance(suite, Suite):
        raise TypeError(f'suite file {str(path)!r} must define SUITE, a '
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
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='with --configs: key=value overrides applied to every config')
    parser.add_argument('--input-size', type=parse_size, default=(320, 320),
                        help='N or HxW (default: 320)')
    parser.add_argument('--batch-size', type=positive_int, default=1)
    parser.add_argument('--threads', type=positive_int, default=default_threads(),
                        help='CPU threads (default: all cores of this process, %(default)s)')
    parser.add_argument('--device', default='cpu', help="'cpu' or 'cuda[:i]' (default: cpu)")
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
                        'detectors, 300 for necks, 20 for EfficientNet-B3)')
    parser.add_argument('--warmup', type=int, default=3, help='untimed rounds (default: 3)')
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
    if args.device.startswith('cuda') and not torch.cuda.is_available():
        raise SystemExit('rfcr-bench: --device cuda asked for, but CUDA is not available')
    if args.warmup < 0:
        raise SystemExit(f'rfcr-bench: --warmup must be >= 0, got {args.warmup}')
    from rfcr.analysis.report import machine_info, markdown, plot, write_outputs

    runtimes = runtimes_asked(args.runtime)
    settings = Settings(input_size=args.input_size, batch_size=args.batch_size,
                        threads=args.threads, device=args.device,
                        memory_format=args.memory_format, warmup=args.warmup,
                        repeats=args.repeats, peak_memory=not args.no_peak_memory,
                        runtimes=runtimes)
    meta = machine_info(args.device, args.threads)
    meta.update(command=' '.join(['rfcr-bench'] + list(argv if argv is not None
                                                         else sys.argv[1:])),
                input_size=list(settings.input_size), batch_size=settings.batch_size,
                memory_format=settings.memory_format, warmup=settings.warmup,
                runtimes=list(runtimes))
    if args.models:
        return run_models(args, settings, meta)
    suite = (configs_suite(args.configs, args.baseline, args.cfg_options) if args.configs
             else suite_asked(args.suite, args.groups))

    # The peak-memory pass uses torch.profiler; keep Kineto's start/stop chatter off stderr
    # (Kineto reads the variable when the profiler starts), and leave the caller's as it was.
    kineto = os.environ.get('KINETO_LOG_LEVEL')
    os.environ.setdefault('KINETO_LOG_LEVEL', '6')
    from tqdm import tqdm
    total = sum(num_steps(g, settings) for g in suite.groups)
    bar = tqdm(total=total, file=sys.stderr, disable=args.no_progress, unit='forward',
               dynamic_ncols=True, mininterval=1.0)

    def progress(message: str, steps: int) -> None:
        bar.set_description(message[:48])
        bar.update(steps)

    asked = suite.targets_on(runtimes)
    rows, times, profiles = [], {}, []
    try:
        for group in suite.groups:
            timed = {} if args.profile else None  # the group's runners, kept to profile them
            group_rows, group_times = run_group(group, settings, progress, timed)
            rows += group_rows
            times[group.name] = group_times
            if args.profile:  # the group's targets not met, on the runners just timed
                profiles += profile_unmet(suite, group_rows, [t.check(times) for t in asked
                                                              if t.group == group.name],
                                          settings, timed)
    finally:
        bar.close()
        if kineto is None:
            os.environ.pop('KINETO_LOG_LEVEL', None)

    if hasattr(os, 'getloadavg'):
        meta['load_average_end'] = [round(x, 2) for x in os.getloadavg()]
    meta['repeats_note'] = (str(settings.repeats) if settings.repeats else
                            '/'.join(sorted({str(g.repeats) for g in suite.groups})))
    meta['finite_ratios'] = finite_ratios(rows)
    targets = [t.check(times) for t in asked]
    groups = [dict(name=g.name, baseline=g.baseline, note=g.note,
                   repeats=settings.repeats or g.repeats) for g in suite.groups]
    table = markdown(rows, groups, targets, meta)
    result = dict(meta=meta, groups=groups, rows=rows, targets=targets,
                  timings_s={g: {n: t for n, t in ts.items()} for g, ts in times.items()})
    if args.profile:
        result['profiles'] = [p.as_dict() for p in profiles]
        if profiles:
            from rfcr.analysis.profile import SHORT_NODE_US, format_profiles
            table += ('\n\n**Profiles** of the rows of every target not met, on its runtime '
                      '(one inference, averaged over 20 profiled runs; eager in the row\'s '
                      f'faster memory format). Nodes shorter than {SHORT_NODE_US:g} µs and '
                      'time outside every node are what fragmentation costs; torch.compile\'s '
                      'own kernels are not itemized and count as outside.\n\n'
                      + format_profiles(profiles))
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


def profile_unmet(suite: Suite, rows: Sequence[BenchRow], targets: Sequence[dict],
                  settings: Settings,
                  runners: Optional[Mapping[tuple[str, str, str], Runner]] = None) -> list:
    """Profiles of both rows of every target not met, each on the runtime it was judged
    on (a ``best`` target: each row's best runtime), every (row, runtime) once: on the
    runner that was timed where ``runners`` (``run_group``'s, ``(group, row, runtime) ->
    Runner``) has it, else on one built anew."""
    from rfcr.analysis.benchmark import profile_candidate
    candidates = {(g.name, c.name): c for g in suite.groups for c in g.candidates}
    formats = {(r.group, r.name): r.memory_format or 'contiguous' for r in rows}
    wanted = []
    for t in targets:
        if t.get('met') is not False:
            continue
        runtimes = t.get('runtimes') or [t['runtime'], t['runtime']]
        for name, rt in zip((t['a'], t['b']), runtimes):
            if (t['group'], name, rt) not in wanted:
                wanted.append((t['group'], name, rt))
    profiles = []
    for group, name, rt in wanted:
        print(f'rfcr-bench: profiling {name} on {rt}', file=sys.stderr)
        profiles.append(profile_candidate(candidates[(group, name)], rt, settings,
                                          formats[(group, name)],
                                          (runners or {}).get((group, name, rt))))
    return profiles


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
    meta['repeats_note'] = str(settings.repeats or 30)
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
    run(argv)  # console scripts sys.exit() what main returns: return nothing


if __name__ == '__main__':
    main()
