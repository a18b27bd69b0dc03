"""Resizes between adjacent levels of a feature pyramid, exact for any input size.

A stride-2 stage maps ``n`` pixels to ``ceil(n / 2)`` (3x3 convs with padding 1, as in
MobileNetV2) or ``floor(n / 2)`` (unpadded or ``floor``-mode pooling). So pooling uses
``ceil_mode`` exactly when the target is the ceiling, and nearest upsampling repeats each
pixel ``factor`` times, then crops (or, for a ``floor`` pyramid, repeats the edge) to the
target. ``scale_factor=2`` alone breaks on odd sizes; these never do, and refuse a target
that is not the neighbouring level of the input.

These are the plain ops (``F.max_pool2d``, ``F.interpolate``) that autograd, tracers and
exporters understand; the folded modules of :mod:`rfcr.deploy` call them too.
"""
from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor


def _refuse(name: str, src: tuple[int, int], dst: tuple[int, int], expected: str) -> None:
    raise ValueError(f'{name}: cannot resize a {src[0]}x{src[1]} map to {dst[0]}x{dst[1]}; '
                     f'expected {expected} (feature maps must form a stride pyramid)')


def check_pool(src: tuple[int, int], size: tuple[int, int], factor: int = 2,
               name: str = 'max_pool_to') -> None:
    """``ValueError`` unless each side of ``size`` is the floor or the ceiling of the
    ``src`` side divided by ``factor``."""
    (h, w), (dh, dw) = src, size
    floor_h, floor_w, ceil_h, ceil_w = h // factor, w // factor, -(-h // factor), -(-w // factor)
    if dh not in (floor_h, ceil_h) or dw not in (floor_w, ceil_w):
        expected = f'{ceil_h}x{ceil_w}'
        if (floor_h, floor_w) != (ceil_h, ceil_w):
            expected = f'{floor_h}x{floor_w} (floor) or {expected} (ceil)'
        _refuse(name, (h, w), (dh, dw), expected)


def check_upsample(src: tuple[int, int], size: tuple[int, int], factor: int = 2,
                   name: str = 'upsample_to') -> None:
    """``ValueError`` unless ``size`` is a ``factor`` x upsampling of ``src`` (cropped or
    edge-repeated by less than ``factor`` pixels)."""
    (h, w), (dh, dw) = src, size
    if not (factor * (h - 1) < dh <= factor * h + factor - 1
            and factor * (w - 1) < dw <= factor * w + factor - 1):
        _refuse(name, (h, w), (dh, dw),
                f'between {factor * (h - 1) + 1}x{factor * (w - 1) + 1} and '
                f'{factor * h + factor - 1}x{factor * w + factor - 1}')


def max_pool_to(x: Tensor, size: tuple[int, int], factor: int = 2, name: str = 'max_pool_to'
                ) -> Tensor:
    """``factor x factor`` max-pool (stride ``factor``) of ``x`` to exactly ``size``."""
    (h, w), (dh, dw) = x.shape[-2:], size
    check_pool((h, w), (dh, dw), factor, name)
    if dh == -(-h // factor) and dw == -(-w // factor):
        return F.max_pool2d(x, factor, factor, ceil_mode=True)
    if dh == h // factor and dw == w // factor:
        return F.max_pool2d(x, factor, factor)
    # Mixed: ceil along one axis, floor along the other. Pad the ceil axis with -inf.
    pad_h = max(dh * factor - h, 0)
    pad_w = max(dw * factor - w, 0)
    return F.max_pool2d(F.pad(x, (0, pad_w, 0, pad_h), value=float('-inf')), factor, factor)


def upsample_to(x: Tensor, size: tuple[int, int], factor: int = 2, name: str = 'upsample_to'
                ) -> Tensor:
    """Nearest ``factor`` x upsampling of ``x`` to exactly ``size``.

    Output pixel ``i`` copies input pixel ``min(i // factor, n - 1)``: the input pixel
    whose stride-``factor`` cell covers it.
    """
    (h, w), (dh, dw) = x.shape[-2:], size
    check_upsample((h, w), (dh, dw), factor, name)
    x = F.interpolate(x, scale_factor=factor, mode='nearest')
    h, w = x.shape[-2:]
    if dh > h or dw > w:
        x = F.pad(x, (0, max(dw - w, 0), 0, max(dh - h, 0)), mode='replicate')
    return x[..., :dh, :dw]
