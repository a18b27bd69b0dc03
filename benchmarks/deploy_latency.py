"""Eager vs deploy-folded vs exported latency of RFCR and the YOLO-ReT-M0.75 detector.

    python benchmarks/deploy_latency.py                # 320x320, batch 1, 1 thread
    python benchmarks/deploy_latency.py --size 416 --threads 2 --runs 50
    python benchmarks/deploy_latency.py --runtimes eager onnxruntime openvino compile

Weights are random (nothing is downloaded), with BN statistics calibrated on random
images so activations have the magnitudes of a trained network, and signed fusion
weights. Every variant of a model (eager contiguous and channels_last, then each runtime
of the table, rfcr.deploy.runtime.RUNTIMES; each unfolded and folded by
switch_to_deploy) is timed in one interleaved run (rfcr.analysis.latency); speed-ups are
paired per round against unfolded eager. Compare ratios, not milliseconds across runs or
machines. rfcr-bench's deploy group compares folded models with each other; this script
compares each model with its own folded self.
"""
from __future__ import annotations

import argparse
import copy
from pathlib import Path

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from rfcr.analysis.latency import Stats, interleaved_timings, ratio_ci
from rfcr.analysis.report import interval
from rfcr.deploy import switch_to_deploy
from rfcr.deploy.export import detector_wrapper, neck_wrapper
from rfcr.deploy.runtime import EAGER, RUNTIMES, Runner, eager_runner
from rfcr.models import RFCR
from rfcr.utils.config import build_model
from rfcr.utils.cpu import cpu_name, isa_summary

CONFIG = (Path(__file__).resolve().parents[1] / 'configs' / 'yoloret' /
          'yoloret_mobilenetv2-0.75_rfcr_2xb8-320-250e_coco.py')


def calibrate(model: nn.Module, size: int, batches: int = 2) -> None:
    """Random signed fusion weights; BN statistics from random images (cumulative)."""
    for m in model.modules():
        if isinstance(m, RFCR):
            with torch.no_grad():
                m.fusion_weights.uniform_(-1.5, 1.5)
        if isinstance(m, _BatchNorm):
            m.reset_running_stats()
            m.momentum = None
    model.train()
    with torch.no_grad():
        for _ in range(batches):
            model(torch.randn(4, 3, size, size), mode='tensor')
    model.eval()


def runners(module: nn.Module, inputs: tuple, runtimes: list[str],
            threads: int) -> dict[str, Runner]:
    """Each variant's runner: ``eager``, ``eager channels_last`` and ``RUNTIME``, each
    ``... deploy`` too (a folded copy)."""
    variants = {'': module.eval(), ' deploy': switch_to_deploy(copy.deepcopy(module))}
    out = {}
    for rt in runtimes:
        for suffix, m in variants.items():
            out[f'{rt}{suffix}'] = RUNTIMES[rt].runner(m, inputs, threads)
            if rt == EAGER:
                out[f'{rt}{suffix} channels_last'] = eager_runner(m, inputs, threads,
                                                                  channels_last=True)
    return out


def table(times: dict[str, list[float]], baseline: str) -> str:
    """Median and p90 ms per variant, and its speed-up over ``baseline`` (median of the
    per-round ratios, with its 95 % interval)."""
    width = max(28, *map(len, times))
    lines = [f'{"variant":<{width}}  median ms   p90 ms   speed-up [95% CI]']
    for name, ts in times.items():
        s = Stats.of([t * 1e3 for t in ts])
        speedup = interval(ratio_ci(times[baseline], ts).as_dict(), 2)
        lines.append(f'{name:<{width}}  {s.median:9.2f}  {s.p90:7.2f}  {speedup}')
    return '\n'.join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--config', default=str(CONFIG), help='detector config')
    parser.add_argument('--size', type=int, default=320, help='square input size')
    parser.add_argument('--batch', type=int, default=1)
    parser.add_argument('--threads', type=int, default=1,
                        help='intra-op threads of every runtime')
    parser.add_argument('--runtimes', nargs='+', choices=RUNTIMES,
                        default=[EAGER, 'onnxruntime'],
                        help='the runtimes to time (eager is always the baseline)')
    parser.add_argument('--warmup', type=int, default=5)
    parser.add_argument('--runs', type=int, default=30)
    args = parser.parse_args()
    runtimes = [EAGER] + [rt for rt in args.runtimes if rt != EAGER]
    torch.set_num_threads(args.threads)  # eager's too: no runner switches the count

    torch.manual_seed(0)
    detector = build_model(args.config)
    calibrate(detector, args.size)
    x = torch.randn(args.batch, 3, args.size, args.size)
    with torch.no_grad():
        feats = detector.backbone(x)
    necks = detector.neck if isinstance(detector.neck, nn.Sequential) else [detector.neck]
    rfcr = next(n for n in necks if isinstance(n, RFCR))

    print(f'torch {torch.__version__}, {cpu_name()} ({isa_summary()}), '
          f'{args.threads} thread(s), input {args.batch}x3x{args.size}x{args.size}, '
          f'{args.runs} runs interleaved')
    for name, module, inputs in (('RFCR', neck_wrapper(rfcr), feats),
                                 ('YOLO-ReT detector', detector_wrapper(detector), (x, ))):
        times = interleaved_timings(runners(module, tuple(inputs), runtimes, args.threads),
                                    repeats=args.runs, warmup=args.warmup)
        print(f'\n{name}\n{table(times, EAGER)}')


if __name__ == '__main__':
    main()
