"""Resizes between adjacent levels of a feature pyramid, exact for any input size.

A stride-2 stage maps ``n`` pixels to ``ceil(n / 2)`` (3x3 convs with padding 1, as in
MobileNetV2) or ``floor(n / 2)`` (unpadded or ``floor``-mode pooling). So pooling uses
``ceil_mode`` exactly when the target is the ceiling, and nearest upsampling repeats each
pixel ``factor`` times, then crops (or, for a ``floor`` pyramid, repeats the edge) to the
target. ``scale_factor=2`` alone breaks on odd sizes; these never do, and refuse a target
that is not the neighbouring level of the input.
"""
from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor


def _check(name: str, src: tuple[int, int], dst: tuple[int, int], ok, expected: str) -> None:
    if not all(ok(s, d) for s, d in zip(src, dst)):
        raise ValueError(f'{name}: cannot resize a {src[0]}x{src[1]} map to {dst[0]}x{dst[1]}; '
                         f'expected {expected} (feature maps must form a stride pyramid)')


def max_pool_to(x: Tensor, size: tuple[int, int], factor: int = 2, name: str = 'max_pool_to'
                ) -> Tensor:
    """``factor x factor`` max-pool (stride ``factor``) of ``x`` to exactly ``size``."""
    src = tuple(x.shape[-2:])
    size = tuple(size)
    floors = tuple(s // factor for s in src)
    ceils = tuple(-(-s // factor) for s in src)
    expected = f'{ceils[0]}x{ceils[1]}'
    if floors != ceils:
        expected = f'{floors[0]}x{floors[1]} (floor) or {expected} (ceil)'
    _check(name, src, size, lambda s, d: d in (s // factor, -(-s // factor)), expected)
    if size == floors:
        return F.max_pool2d(x, factor, factor)
    if size == ceils:
        return F.max_pool2d(x, factor, factor, ceil_mode=True)
    # Mixed: ceil along one axis, floor along the other. Pad the ceil axis with -inf.
    pad_h = size[0] * factor - src[0] if size[0] == ceils[0] else 0
    pad_w = size[1] * factor - src[1] if size[1] == ceils[1] else 0
    x = F.pad(x, (0, max(pad_w, 0), 0, max(pad_h, 0)), value=float('-inf'))
    return F.max_pool2d(x, factor, factor)


def upsample_to(x: Tensor, size: tuple[int, int], factor: int = 2, name: str = 'upsample_to'
                ) -> Tensor:
    """Nearest ``factor`` x upsampling of ``x`` to exactly ``size``.

    Output pixel ``i`` copies input pixel ``min(i // factor, n - 1)``: the input pixel
    whose stride-``factor`` cell covers it.
    """
    src = tuple(x.shape[-2:])
    size = tuple(size)
    _check(name, src, size, lambda s, d: factor * (s - 1) < d <= factor * s + factor - 1,
           f'between {factor * (src[0] - 1) + 1}x{factor * (src[1] - 1) + 1} and '
           f'{factor * src[0] + factor - 1}x{factor * src[1] + factor - 1}')
    x = F.interpolate(x, scale_factor=factor, mode='nearest')
    h, w = x.shape[-2:]
    if size[0] > h or size[1] > w:
        x = F.pad(x, (0, max(size[1] - w, 0), 0, max(size[0] - h, 0)), mode='replicate')
    return x[..., :size[0], :size[1]]
