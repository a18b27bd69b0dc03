"""The PyTorch ``RFCR_module`` port circulated in the seed notes, re-implemented as the
reference peer for ``rfcr-bench`` (a peer to beat, not a module to ship).

Faithful to the port as posted (prakharg24/yoloret issue thread, NanoDet-based), including
what differs from the paper and from :class:`rfcr.models.RFCR`:

- stride 8 is "max-pooled" with ``F.max_pool2d(x, 1, stride=2)``, a 1x1 window, i.e.
  plain subsampling, and *before* its 1x1 collect conv;
- stride 32 and the redistributed stride-8 map are resized with bilinear
  ``F.interpolate(scale_factor=2)``, so only even input sizes work (use 320);
- the stride-32 redistribution is again ``max_pool2d(x, 1, stride=2)``;
- the fused map comes *first* in every concat;
- NanoDet's ``DepthwiseConvModule`` is depthwise 5x5 - BN - ReLU6 *and* pointwise 1x1 -
  BN - ReLU6, so the separable fusion conv has an extra ``mid -> mid`` 1x1 conv before
  the ``mid -> out`` one.

Example:
    >>> import torch
    >>> from benchmarks.seed_port_rfcr import SeedPortRFCR
    >>> port = SeedPortRFCR((24, 72, 120)).eval()
    >>> outs = port([torch.rand(1, 24, 40, 40), torch.rand(1, 72, 20, 20),
    ...              torch.rand(1, 120, 10, 10)])
    >>> [tuple(o.shape) for o in outs]
    [(1, 120, 40, 40), (1, 168, 20, 20), (1, 216, 10, 10)]
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def _conv_bn_relu6(in_channels: int, out_channels: int, kernel_size: int,
                   groups: int = 1) -> nn.Sequential:
    # NanoDet's ConvModule with norm: bias='auto' -> no bias; ReLU6 in place.
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel_size, padding=kernel_size // 2,
                  groups=groups, bias=False),
        nn.BatchNorm2d(out_channels), nn.ReLU6(inplace=True))


class MobilenetSeparableConv2D(nn.Module):
    """NanoDet ``DepthwiseConvModule(mid, mid, 5)`` then ``ConvModule(mid, out, 1)``."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.depthwiseconv = nn.Sequential(
            _conv_bn_relu6(in_channels, in_channels, 5, groups=in_channels),  # depthwise
            _conv_bn_relu6(in_channels, in_channels, 1))  # NanoDet's pointwise
        self.conv = _conv_bn_relu6(in_channels, out_channels, 1)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(self.depthwiseconv(x))


class SeedPortRFCR(nn.Module):
    """``RFCR_module`` from the seed notes: inputs at strides 8, 16, 32."""

    def __init__(self, in_channel: Sequence[int], mid_channel: int = 48,
                 out_channel: int = 96) -> None:
        super().__init__()
        self.in_channels = tuple(in_channel)
        self.out_channels = tuple(c + out_channel for c in in_channel)
        self.scale = nn.ParameterList(
            nn.Parameter(torch.tensor([1.]), requires_grad=True) for _ in in_channel)
        self.pwconv = nn.ModuleList(
            nn.Conv2d(c, mid_channel, kernel_size=1, stride=1, padding=0, bias=False)
            for c in in_channel)
        self.MB_conv = MobilenetSeparableConv2D(mid_channel, out_channel)

    def forward(self, model_outputs: Sequence[Tensor]) -> list[Tensor]:
        fuse_out = [
            F.max_pool2d(model_outputs[0], 1, stride=2),
            model_outputs[1],
            F.interpolate(model_outputs[2], scale_factor=2, mode='bilinear'),
        ]
        fuse_out = [conv(x) for conv, x in zip(self.pwconv, fuse_out)]
        sum_feat = (self.scale[0] * fuse_out[0] + self.scale[1] * fuse_out[1]
                    + self.scale[2] * fuse_out[2])
        mb_feat = self.MB_conv(sum_feat)
        return [
            torch.cat([F.interpolate(mb_feat, scale_factor=2, mode='bilinear'),
                       model_outputs[0]], dim=1),
            torch.cat([mb_feat, model_outputs[1]], dim=1),
            torch.cat([F.max_pool2d(mb_feat, 1, stride=2), model_outputs[2]], dim=1),
        ]
