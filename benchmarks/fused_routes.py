"""Which route FusedConv should take, per conv shape, on this CPU: the reference
(``F.conv2d`` + bias + activation), oneDNN's fused call, and (1x1 convs on channels_last
inputs) one matrix product. Every route of a shape is timed in the same interleaved
rounds; the table gives each route's time relative to the reference and the route
FusedConv picks here.

    python benchmarks/fused_routes.py                  # 1 and 2 threads
    ATEN_CPU_CAPABILITY=avx2 python benchmarks/fused_routes.py   # ATen's AVX2 kernels

The shapes are YOLO-ReT-M0.75's at 320x320 (collect, reduce, node and prediction 1x1
convs, depthwise 3x3 and 5x5), plus a few larger 1x1 convs around the thresholds.
"""
from __future__ import annotations

import argparse
import copy
import statistics

import torch
from torch import nn

from rfcr.analysis.latency import interleaved_timings
from rfcr.deploy import fused
from rfcr.deploy.fused import FusedConv
from rfcr.utils.cpu import cpu_name, isa_summary

# (in, out, kernel, stride, groups, size): conv shapes of YOLO-ReT-M0.75 at 320x320.
SHAPES = [
    (24, 48, 1, 1, 1, 40), (72, 48, 1, 1, 1, 20), (120, 48, 1, 1, 1, 10),
    (48, 96, 1, 1, 1, 20), (216, 512, 1, 1, 1, 10), (255, 256, 1, 1, 1, 20),
    (255, 128, 1, 1, 1, 40), (384, 256, 1, 1, 1, 20), (128, 255, 1, 1, 1, 40),
    (24, 144, 1, 1, 1, 80), (16, 96, 1, 1, 1, 160), (144, 24, 1, 1, 1, 80),
    (432, 72, 1, 1, 1, 20), (720, 120, 1, 1, 1, 10),
    (144, 144, 3, 1, 144, 80), (144, 144, 3, 2, 144, 80), (432, 432, 3, 1, 432, 20),
    (48, 48, 5, 1, 48, 20), (128, 128, 3, 1, 128, 40),
]


def routes(conv: nn.Conv2d, x: torch.Tensor) -> dict:
    """Zero-argument callables, one per route that applies to ``x``."""
    act = nn.ReLU6()
    module = FusedConv(conv, act)
    out = {'reference': lambda: act(conv(x))}
    packed = module._packed

    def onednn():
        padding, stride, dilation, groups = module._args
        w = packed.get(conv.weight, x, module._args)
        return torch.ops.mkldnn._convolution_pointwise(
            x, w, conv.bias, padding, stride, dilation, groups, 'hardtanh', [0.0, 6.0], None)

    if fused.onednn_available():
        out['oneDNN'] = onednn
    if module._pointwise and x.is_contiguous(memory_format=torch.channels_last):
        out['matmul'] = lambda: module._forward_matmul(x, None)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--threads', type=int, nargs='+', default=[1, 2])
    parser.add_argument('--runs', type=int, default=200)
    args = parser.parse_args()
    print(f'{cpu_name()} ({isa_summary()}), torch {torch.__version__}')
    print(f'thresholds here: {fused.route_thresholds()}')
    for threads in args.threads:
        torch.set_num_threads(threads)
        print(f'\n{threads} thread(s), channels_last inputs; median ms, x reference; '
              'the route FusedConv takes')
        print(f'{"conv (in->out k s g @ size)":<34} {"out elems":>10} {"reference":>10} '
              f'{"oneDNN":>14} {"matmul":>14}  picked')
        for c_in, c_out, k, s, g, size in SHAPES:
            conv = nn.Conv2d(c_in, c_out, k, s, k // 2, groups=g).requires_grad_(False)
            conv = conv.to(memory_format=torch.channels_last)
            x = torch.randn(1, c_in, size, size).contiguous(memory_format=torch.channels_last)
            with torch.inference_mode(False), torch.no_grad():
                candidates = routes(conv, x)
                times = interleaved_timings(candidates, repeats=args.runs, warmup=10)
                module = FusedConv(copy.deepcopy(conv), nn.ReLU6())
                module(x)
                picked = ('matmul' if module._matmul(x) else
                          'oneDNN' if module._packed.entries else 'reference')
            ref = statistics.median(times['reference'])
            cells = [f'{1e3 * ref:10.3f}']
            for name in ('oneDNN', 'matmul'):
                if name in times:
                    t = statistics.median(times[name])
                    cells.append(f'{1e3 * t:7.3f} {t / ref:5.2f}x')
                else:
                    cells.append(f'{"-":>14}')
            elems = c_out * (-(-size // s)) ** 2
            label = f'{c_in}->{c_out} {k}x{k} s{s} g{g} @ {size}'
            print(f'{label:<34} {elems:>10} ' + ' '.join(cells) + f'  {picked}')


if __name__ == '__main__':
    main()
