"""``rfcr-bench``: parameters, MACs, latency and peak memory of detectors and necks, side
by side, with ratios measured in one interleaved run.

Default suite (no data, no GPU, random weights; 320x320, batch 1, all cores):

- the paper's Table 4 ablation as a cost table, widths 0.75 and 1.4 (VOC heads);
- the swap-ins next to the mmdet models they came from, and YOLO-ReT-M0.75/M1.4 (COCO);
- necks on the M0.75 pyramid: RFCR vs the seed-notes port, mmdet FPN and PAFPN;
- deploy: detectors and necks again, every one folded for inference with
  ``rfcr.deploy.switch_to_deploy`` (BN into convs for mmdet's and the port's too;
  YOLO-ReT's linear maps composed);
- efficientnet: at 416 (13/10 of ``--input-size``), the full EfficientNet-B3 + FPN/PAN, the
  truncated one + RFCR and YOLO-ReT-EB3 (COCO heads), as built and, in a second group, all
  three folded.

Like is compared with like: the first three groups run every model as built (unfolded),
the deploy group every model folded, and ``--runtime`` (ONNX Runtime, OpenVINO,
torch.compile) runs every model of every group on each runtime too, in the same rounds,
each compared with its reference on the same runtime. Then the targets are checked on the
measured ratios, per runtime and on each model's best runtime; ``--profile`` shows where
the time goes for every target not met. ``--configs`` benchmarks any mmdet configs
instead (the first, or ``--baseline``, is the reference); ``--models`` times exported
files (e.g. FP32 and INT8 from ``rfcr-quantize``).

Output: a markdown table on stdout; bench.json, bench.csv, bench.md and bench.png in
``--out-dir``. Read ratios, not milliseconds: every ratio compares two models timed in the
same rounds. Needs a repository checkout for the default suite (configs/, benchmarks/).

Examples::

    rfcr-bench                                    # the default suite, eager only
    rfcr-bench --suite necks --threads 1
    rfcr-bench --suite detectors deploy --runtime onnxruntime   # + ONNX Runtime tables
    rfcr-bench --runtime installed                # + every runtime installed (make bench)
    rfcr-bench --suite deploy --runtime openvino compile --profile
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
from typing import Optional, Sequence

import torch
from mmengine.config import DictAction

from rfcr.analysis.benchmark import (BEST, FORMAT_CHOICES, Candidate, Group, Settings, Suite,
                                     Target)
from rfcr.analysis.latency import default_threads
from rfcr.deploy.runtime import EXPORTED_RUNTIMES
from rfcr.tools.summary import parse_size, positive_int

REPO = Path(__file__).resolve().parents[2]
SUITES = ('ablation', 'detectors', 'necks', 'deploy', 'efficientnet')
ABLATION_ROWS = (  # (label, config file suffix) in Table 4's order
    ('full (baseline)', 'full_fpnpan'),
    ('+truncation', 'trunc_fpnpan'),
    ('+RFCR', 'full_rfcr'),
    ('trunc+RFCR', 'trunc_rfcr'),
    ('+shortcut', 'trunc_rfcr-shortcut'),
)
ABLATION_DIRS = {'0.75': 'configs/ablation', '1.4': 'benchmarks/configs/ablation_m1.4'}
MMDET_YOLOV3 = 'mmdet::yolo/yolov3_mobilenetv2_8xb24-320-300e_coco.py'
MMDET_SSDLITE = 'mmdet::ssd/ssdlite_mobilenetv2-scratch_8xb24-600e_coco.py'
NECK_CHANNELS = (24, 72, 120)  # TruncatedMobileNetV2 x0.75 at strides 8, 16, 32


def image(batch: int, size: tuple[int, int]) -> tuple:
    """A detector's input: ``model(images)`` runs its tensor-mode forward."""
    return (torch.rand(batch, 3, *size), )


def pyramid(batch: int, size: tuple[int, int], channels: Sequence[int] = NECK_CHANNELS
            ) -> tuple:
    """A neck's input: maps at strides 8, 16, 32 of a ``size`` image, sized as MobileNetV2's
    stride-2 3x3 convs (padding 1) size them."""
    h, w = size
    sizes = []
    for _ in range(5):
        h, w = -(-h // 2), -(-w // 2)
        sizes.append((h, w))
    return ([torch.rand(batch, c, *s) for c, s in zip(channels, sizes[2:])], )


def config_builder(path: str, cfg_options: Optional[dict] = None):
    """A zero-argument builder for the model of ``path``: ``mmdet::`` paths, paths that
    exist from the current directory, else paths relative to the repository."""
    from rfcr.utils.config import build_model
    if '::' not in path and not os.path.exists(path) and (REPO / path).exists():
        path = str(REPO / path)
    return partial(build_model, path, cfg_options=cfg_options)


def config_candidate(name: str, family: str, path: str, ref: Optional[str] = None
                     ) -> Candidate:
    return Candidate(name, family, config_builder(path), image, source=path, ref=ref)


def ablation_group(width: str) -> Group:
    folder = ABLATION_DIRS[width]
    files = {suffix: next((REPO / folder).glob(f'*-{width}-{suffix}_2xb8-*.py'))
             for _, suffix in ABLATION_ROWS}
    return Group(
        f'ablation-M{width}', baseline=f'M{width} full (baseline)',
        note=f"Table 4 rows at width {width}, VOC heads (20 classes); ratios vs the full "
             'backbone baseline. RFCR\'s own cost: trunc+RFCR vs +truncation.',
        candidates=[config_candidate(f'M{width} {label}', f'YOLO-ReT ablation M{width}',
                                     str(files[suffix].relative_to(REPO)))
                    for label, suffix in ABLATION_ROWS])


YOLORET_M075 = 'configs/yoloret/yoloret_mobilenetv2-0.75_rfcr_2xb8-320-250e_coco.py'


def _deployed(build):
    """``build()`` folded for inference (``rfcr.deploy.switch_to_deploy``)."""
    from rfcr.deploy import switch_to_deploy
    return switch_to_deploy(build())


def deploy_group() -> Group:
    yolov3, ssdlite = 'yolov3_mobilenetv2_320 (folded)', 'ssdlite_mobilenetv2 (folded)'
    c = list(NECK_CHANNELS)
    rfcr = partial(_mmdet_neck, dict(type='RFCR', in_channels=c))
    return Group(
        'deploy', baseline=yolov3, repeats=60,
        note='every model folded for inference by rfcr.deploy.switch_to_deploy: BN into the '
             'convs for all (mmdet\'s and the seed port\'s too, so the comparison is fair), '
             'YOLO-ReT\'s linear maps composed; COCO heads. Necks on the M0.75 pyramid.',
        candidates=[
            Candidate(yolov3, 'mmdet', partial(_deployed, config_builder(MMDET_YOLOV3)),
                      image, source=MMDET_YOLOV3),
            Candidate(ssdlite, 'mmdet', partial(_deployed, config_builder(MMDET_SSDLITE)),
                      image, source=MMDET_SSDLITE),
            Candidate('YOLO-ReT-M0.75 (folded)', 'YOLO-ReT',
                      partial(_deployed, config_builder(YOLORET_M075)), image,
                      source=YOLORET_M075),
            Candidate('RFCR (folded)', 'RFCR', partial(_deployed, rfcr), pyramid,
                      source='rfcr.deploy.DeployRFCR', ref='seed-port RFCR (folded)'),
            Candidate('seed-port RFCR (folded)', 'seed port', partial(_deployed, _seed_port),
                      pyramid, source='benchmarks/seed_port_rfcr.py',
                      ref='RFCR (folded)'),
        ])


def detectors_group() -> Group:
    yolov3, ssdlite = 'yolov3_mobilenetv2_320', 'ssdlite_mobilenetv2'
    swapin = 'configs/swapin/{}_mobilenetv2-trunc_rfcr{}.py'.format
    return Group(
        'detectors-COCO', baseline=yolov3,
        note='COCO heads (80 classes); swap-ins vs the mmdet models they came from, '
             'YOLO-ReT vs both.',
        candidates=[
            config_candidate(yolov3, 'mmdet', MMDET_YOLOV3),
            config_candidate('yolov3 swap-in (trunc+RFCR)', 'swap-in',
                             swapin('yolov3', '_8xb24-320-300e_coco')),
            config_candidate(ssdlite, 'mmdet', MMDET_SSDLITE),
            config_candidate('ssdlite swap-in (trunc+RFCR)', 'swap-in',
                             swapin('ssdlite', '-scratch_8xb24-600e_coco'), ref=ssdlite),
            config_candidate('YOLO-ReT-M0.75', 'YOLO-ReT', YOLORET_M075),
            config_candidate('YOLO-ReT-M1.4', 'YOLO-ReT',
                             'configs/yoloret/yoloret_mobilenetv2-1.4_rfcr_2xb8-320-250e_coco.py'),
        ])


def _mmdet_neck(cfg: dict):
    from mmdet.registry import MODELS
    from mmdet.utils import register_all_modules
    import rfcr  # noqa: F401
    register_all_modules()
    neck = MODELS.build(cfg)
    neck.eval()
    return neck


def _seed_port():
    """The seed-notes port, from benchmarks/ of the checkout (not part of the package)."""
    path = REPO / 'benchmarks' / 'seed_port_rfcr.py'
    spec = importlib.util.spec_from_file_location('seed_port_rfcr', path)
    if spec is None or not path.is_file():
        raise FileNotFoundError(f'{path} not found: the seed port lives in the repository')
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    port = module.SeedPortRFCR(NECK_CHANNELS)
    port.eval()
    return port


# The paper's EfficientNet-B3 models (COCO), in Table 4's order, then the released graph.
EFFICIENTNET_ROWS = (
    ('EB3 full + FPN/PAN',
     'configs/ablation/yoloret_efficientnet-b3-full_fpnpan_2xb8-416-250e_coco.py'),
    ('EB3 trunc+RFCR', 'configs/ablation/yoloret_efficientnet-b3-trunc_rfcr_2xb8-416-250e_coco.py'),
    ('YOLO-ReT-EB3', 'configs/yoloret/yoloret_efficientnet-b3_rfcr_2xb8-416-250e_coco.py'),
)


def image_416(batch: int, size: tuple[int, int]) -> tuple:
    """A detector's input at 13/10 of ``size``: 416x416, the paper's EfficientNet-B3 size, at
    the default 320."""
    return image(batch, (size[0] * 13 // 10, size[1] * 13 // 10))


def efficientnet_group(deployed: bool = False) -> Group:
    """The EfficientNet-B3 models as built or (``deployed``) every one folded."""
    suffix = ' (folded)' if deployed else ''
    candidates = []
    for label, path in EFFICIENTNET_ROWS:
        build = config_builder(path)
        candidates.append(Candidate(f'{label}{suffix}', 'YOLO-ReT EB3',
                                    partial(_deployed, build) if deployed else build, image_416,
                                    source=path))
    how = ('every model folded by rfcr.deploy.switch_to_deploy' if deployed
           else 'every model as built (unfolded)')
    return Group(
        f'efficientnet{"-deploy" if deployed else ""}', baseline=f'EB3 full + FPN/PAN{suffix}',
        repeats=20, candidates=candidates,
        note=f'EfficientNet-B3 at 416x416 (13/10 of --input-size), COCO heads, {how}: the '
             'full backbone + FPN/PAN (Table 4 baseline), truncation + RFCR, and YOLO-ReT-EB3 '
             '(+ the stride-4 shortcut, the released graph); ratios vs the full baseline.')


def necks_group() -> Group:
    c = list(NECK_CHANNELS)
    return Group(
        'necks', baseline='RFCR', repeats=300,
        note='necks alone on the M0.75 pyramid (24/72/120 channels at strides 8/16/32); '
             'FPN and PAFPN at 96 channels, the width RFCR adds to every level. The seed '
             'port (benchmarks/seed_port_rfcr.py) needs even sizes.',
        candidates=[
            Candidate('RFCR', 'RFCR', partial(_mmdet_neck, dict(type='RFCR', in_channels=c)),
                      pyramid, source='rfcr.models.RFCR(24, 72, 120)'),
            Candidate('seed-port RFCR', 'seed port', _seed_port, pyramid,
                      source='benchmarks/seed_port_rfcr.py'),
            Candidate('FPN 96', 'mmdet neck', partial(_mmdet_neck, dict(
                type='FPN', in_channels=c, out_channels=96, num_outs=3)), pyramid,
                source='mmdet FPN(out_channels=96)'),
            Candidate('PAFPN 96', 'mmdet neck', partial(_mmdet_neck, dict(
                type='PAFPN', in_channels=c, out_channels=96, num_outs=3)), pyramid,
                source='mmdet PAFPN(out_channels=96)'),
        ])


def default_suite(suites: Sequence[str] = SUITES, runtimes: Sequence[str] = ()) -> Suite:
    """The default groups and their targets; every target is checked on eager PyTorch and
    on each of ``runtimes``, both sides of a ratio on the same one."""
    groups, targets = [], []
    if 'ablation' in suites:
        for width in ABLATION_DIRS:
            groups.append(ablation_group(width))
            m = f'M{width}'
            targets += [
                Target(f'RFCR adds <= 5% to truncated MobileNetV2-x{width} + FPN/PAN (whole '
                       'detector)', f'ablation-{m}', f'{m} trunc+RFCR', f'{m} +truncation',
                       '<=', 1.05),
                Target(f'truncation saves >= 25% of MobileNetV2-x{width} + FPN/PAN',
                       f'ablation-{m}', f'{m} +truncation', f'{m} full (baseline)', '<=', 0.75),
            ]
    if 'detectors' in suites:
        groups.append(detectors_group())
    if 'necks' in suites:
        groups.append(necks_group())
    if 'deploy' in suites:
        groups.append(deploy_group())
        yoloret = 'YOLO-ReT-M0.75 (folded)'
        targets += [
            Target('folded: YOLO-ReT-M0.75 faster than ssdlite_mobilenetv2', 'deploy',
                   yoloret, 'ssdlite_mobilenetv2 (folded)', '<', 1.0),
            Target('folded: YOLO-ReT-M0.75 <= 0.75x yolov3_mobilenetv2_320', 'deploy',
                   yoloret, 'yolov3_mobilenetv2_320 (folded)', '<=', 0.75),
        ]
    if 'efficientnet' in suites:
        groups += [efficientnet_group(), efficientnet_group(deployed=True)]
    targets += [dataclasses.replace(t, runtime=rt) for rt in runtimes for t in targets]
    if 'deploy' in suites and runtimes:  # where each would deploy: its fastest runtime
        targets += [
            Target('best runtime: YOLO-ReT-M0.75 faster than ssdlite_mobilenetv2', 'deploy',
                   yoloret, 'ssdlite_mobilenetv2 (folded)', '<', 1.0, runtime=BEST),
            Target('best runtime: YOLO-ReT-M0.75 <= 0.7x yolov3_mobilenetv2_320', 'deploy',
                   yoloret, 'yolov3_mobilenetv2_320 (folded)', '<=', 0.7, runtime=BEST),
        ]
    return Suite(groups, targets)


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
    candidates = [Candidate(n, 'configs', config_builder(p, cfg_options), image, source=p)
                  for n, p in zip(names, configs)]
    return Suite([Group('configs', baseline=baseline or names[0], candidates=candidates,
                        note='--configs, ratios vs the baseline config')])


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog='rfcr-bench', description=__doc__.split('\n\n')[0],
        epilog=__doc__.split('\n\n', 1)[1], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--suite', nargs='+', choices=SUITES, default=list(SUITES),
                        help='parts of the default suite to run (default: all)')
    parser.add_argument('--configs', nargs='+', metavar='CONFIG',
                        help='benchmark these mmdet configs instead of the default suite')
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
                        help='also run every model on these runtimes (CPU): ONNX Runtime, '
                        'OpenVINO, torch.compile; "installed": all of them this environment '
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
    if args.device.startswith('cuda') and not torch.cuda.is_available():
        raise SystemExit('rfcr-bench: --device cuda asked for, but CUDA is not available')
    if args.warmup < 0:
        raise SystemExit(f'rfcr-bench: --warmup must be >= 0, got {args.warmup}')
    from rfcr.analysis.benchmark import finite_ratios, num_steps, run_group
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
             else default_suite(args.suite, runtimes))

    # The peak-memory pass uses torch.profiler; keep Kineto's start/stop chatter off stderr.
    os.environ.setdefault('KINETO_LOG_LEVEL', '6')
    from tqdm import tqdm
    total = sum(num_steps(g, settings) for g in suite.groups)
    bar = tqdm(total=total, file=sys.stderr, disable=args.no_progress, unit='forward',
               dynamic_ncols=True, mininterval=1.0)

    def progress(message: str, steps: int) -> None:
        bar.set_description(message[:48])
        bar.update(steps)

    rows, times = [], {}
    for group in suite.groups:
        group_rows, group_times = run_group(group, settings, progress)
        rows += group_rows
        times[group.name] = group_times
    bar.close()

    if hasattr(os, 'getloadavg'):
        meta['load_average_end'] = [round(x, 2) for x in os.getloadavg()]
    meta['repeats_note'] = (str(settings.repeats) if settings.repeats else
                            '/'.join(sorted({str(g.repeats) for g in suite.groups})))
    meta['finite_ratios'] = finite_ratios(rows)
    targets = [t.check(rows, times) for t in suite.targets]
    groups = [dict(name=g.name, baseline=g.baseline, note=g.note,
                   repeats=settings.repeats or g.repeats) for g in suite.groups]
    table = markdown(rows, groups, targets, meta)
    result = dict(meta=meta, groups=groups, rows=rows, targets=targets,
                  timings_s={g: {n: t for n, t in ts.items()} for g, ts in times.items()})
    if args.profile:
        profiles = profile_unmet(suite, rows, targets, settings)
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


def profile_unmet(suite: Suite, rows: Sequence[dict], targets: Sequence[dict],
                  settings: Settings) -> list:
    """Profiles of both rows of every target not met, each on the runtime it was judged
    on (a ``best`` target: each row's best runtime), every (row, runtime) once."""
    from rfcr.analysis.benchmark import profile_candidate
    candidates = {(g.name, c.name): c for g in suite.groups for c in g.candidates}
    formats = {(r['group'], r['name']): r.get('memory_format', 'contiguous') for r in rows}
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
                                          formats[(group, name)]))
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
                need = {'compile': 'a C++ compiler (g++) for inductor'}.get(
                    rt, f"the {rt} and onnx packages (pip install 'rfcr[deploy]')")
                raise SystemExit(f'rfcr-bench: --runtime {rt} needs {need}; this '
                                 f'environment runs {list(available) or "none"}')
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
