"""Eager vs deploy-folded vs exported latency of RFCR and the YOLO-ReT-M0.75 detector.

    python benchmarks/deploy_latency.py                # 320x320, batch 1, 1 thread
    python benchmarks/deploy_latency.py --size 416 --threads 2 --runs 50
    python benchmarks/deploy_latency.py --runtimes torch onnxruntime openvino compile

Weights are random (nothing is downloaded), with BN statistics calibrated on random
images so activations have the magnitudes of a trained network, and signed fusion
weights. Every variant of a model is timed in one interleaved run
(rfcr.analysis.latency.measure_deploy_latency); compare ratios, not milliseconds across
runs or machines.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from rfcr.analysis.latency import format_latency_table, measure_deploy_latency
from rfcr.deploy.export import detector_wrapper, neck_wrapper
from rfcr.deploy.runtime import RUNTIMES
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--config', default=str(CONFIG), help='detector config')
    parser.add_argument('--size', type=int, default=320, help='square input size')
    parser.add_argument('--batch', type=int, default=1)
    parser.add_argument('--threads', type=int, default=1,
                        help='intra-op threads of PyTorch and ONNX Runtime')
    parser.add_argument('--runtimes', nargs='+', choices=RUNTIMES,
                        default=['torch', 'onnxruntime'],
                        help='torch (eager) and the exported runtimes to time')
    parser.add_argument('--warmup', type=int, default=5)
    parser.add_argument('--runs', type=int, default=30)
    args = parser.parse_args()

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
        rows = measure_deploy_latency(module, inputs, warmup=args.warmup, runs=args.runs,
                                      threads=args.threads, runtimes=args.runtimes)
        print(f'\n{name}\n{format_latency_table(rows)}')


if __name__ == '__main__':
    main()
