"""``rfcr-summary CONFIG``: a detector's data flow, stage by stage, for one input size.

Every stage with its output shapes, channels and stride, the functional ops between
modules (pool, upsample, concat, weighted sum), parameters, MACs and share of latency.
Works for any mmdet config; weights are random (nothing is downloaded).

Example::

    rfcr-summary configs/yoloret/yoloret_mobilenetv2-0.75_rfcr_2xb8-320-250e_coco.py
    rfcr-summary mmdet::yolo/yolov3_mobilenetv2_8xb24-320-300e_coco.py --input-size 416 --depth 2
"""
from __future__ import annotations

import argparse
from typing import Sequence

import torch

from rfcr.analysis.latency import MEMORY_FORMATS, default_threads
from rfcr.utils.cli import (CfgOptions, add_debug_arg, cli, device, non_negative_int,
                            positive_int)


def parse_size(text: str) -> tuple[int, int]:
    """``320`` -> (320, 320); ``320x416`` -> (320, 416) (height x width)."""
    try:
        parts = [int(p) for p in text.lower().split('x')]
    except ValueError:
        parts = []
    if len(parts) not in (1, 2) or any(p <= 0 for p in parts):
        raise argparse.ArgumentTypeError(
            f'input size must be N or HxW with positive ints, got {text!r}')
    return (parts[0], parts[-1])


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog='rfcr-summary', description=__doc__.split('\n\n')[0],
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('config', help='config file (mmdet::path/to/config.py works too)')
    parser.add_argument('--input-size', type=parse_size, default=(320, 320),
                        help='N or HxW (default: 320)')
    parser.add_argument('--batch-size', type=positive_int, default=1)
    parser.add_argument('--depth', type=positive_int, default=3,
                        help='deepest module level listed (default: 3)')
    parser.add_argument('--runs', type=non_negative_int, default=10,
                        help='timed passes for the latency shares; 0: no timing (default: 10)')
    parser.add_argument('--threads', type=positive_int, default=default_threads(),
                        help='CPU threads (default: all cores)')
    parser.add_argument('--device', type=device, default='cpu',
                        help="'cpu' or 'cuda[:i]' (default: cpu)")
    parser.add_argument('--memory-format', choices=sorted(MEMORY_FORMATS),
                        default='channels_last')
    parser.add_argument('--cfg-options', nargs='+', action=CfgOptions,
                        help='override settings of the config, key=value pairs')
    add_debug_arg(parser)
    return parser


def run(argv: Sequence[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    from rfcr.utils.config import build_model
    from rfcr.analysis.summary import format_summary, summarize

    device = torch.device(args.device)
    fmt = MEMORY_FORMATS[args.memory_format]
    threads = torch.get_num_threads()
    torch.set_num_threads(args.threads)
    try:
        model = build_model(args.config, cfg_options=args.cfg_options)
        model.to(device, memory_format=fmt)
        x = torch.rand(args.batch_size, 3, *args.input_size, device=device).to(memory_format=fmt)
        rows = summarize(model, x, depth=args.depth, runs=args.runs)
    finally:
        torch.set_num_threads(threads)  # main() is called in-process too (tests, notebooks)
    title = (f'{args.config}: input {tuple(x.shape)}, {args.device}, {args.threads} '
             f'thread(s), {args.memory_format}, eval, random weights')
    print(format_summary(rows, title))


def main(argv: Sequence[str] | None = None) -> None:
    cli('rfcr-summary', run, argv)


if __name__ == '__main__':
    main()
