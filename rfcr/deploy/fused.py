"""Eager convolutions with bias, activation and an optional sum fused into one oneDNN call.

PyTorch eager runs ``conv -> + bias -> activation`` as separate passes over the output,
and at one thread it sends 1x1 convs to its THNN kernel, whose bias fill alone is a
full strided pass (``ConvParams::use_mkldnn``). On the small maps of a detector at 320x320
those passes cost as much as the convolutions. oneDNN applies bias, activation and a sum
in the convolution's epilogue; PyTorch exposes that as ``torch.ops.mkldnn.
_convolution_pointwise`` (what ``torch.compile`` emits on CPU). :class:`FusedConv` calls
it with the weight reordered once per input shape into oneDNN's blocked layout.

Measured, 1 thread, channels_last, one call each, interleaved (``min`` of 200 calls):
a 1x1 128->255 conv + bias + ReLU6 at 40x40 1.05 ms vs 1.50 ms unfused; 16->96 at 160x160
2.0 ms vs 4.2 ms; a 3x3 depthwise + bias + ReLU6 at 80x80 0.73 ms vs 0.96 ms.

The fused route runs only where it gives the reference values (up to float rounding):
float32 CPU tensors, no autograd, no tracer (:func:`~rfcr.models.layers.resize.
eager_inference`), a PyTorch built with oneDNN whose op passes a one-time self-check.
Everything else (tracing and ONNX export, autograd, CUDA, other dtypes) takes
``F.conv2d`` + the activation module. :func:`set_enabled` switches the fused route off
(for A/B timing or debugging).

The output of a fused conv is channels_last whatever the input's format: oneDNN's
blocked weights pick that layout. Deploy models therefore run channels_last inside.
"""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..models.layers.resize import eager_inference

__all__ = ['FusedConv', 'fused_activation', 'is_enabled', 'set_enabled']

_state = {'enabled': True, 'checked': None}


def set_enabled(enabled: bool) -> None:
    """Switch the oneDNN route of every :class:`FusedConv` on or off (on by default)."""
    _state['enabled'] = bool(enabled)


def is_enabled() -> bool:
    """Whether :class:`FusedConv` may take the oneDNN route (if the op exists and works)."""
    if not _state['enabled']:
        return False
    if _state['checked'] is None:
        _state['checked'] = _self_check()
    return _state['checked']


def _self_check() -> bool:
    """The op exists, runs, and matches ``F.conv2d`` + ReLU6 and + sum on a tiny input."""
    op = getattr(getattr(torch.ops, 'mkldnn', None), '_convolution_pointwise', None)
    if op is None or not torch.backends.mkldnn.is_available():
        return False
    try:
        gen = torch.Generator().manual_seed(0)
        x = torch.randn(1, 4, 5, 5, generator=gen)
        w = torch.randn(6, 4, 3, 3, generator=gen)
        b = torch.randn(6, generator=gen)
        other = torch.randn(1, 6, 5, 5, generator=gen)
        with torch.no_grad():
            packed = torch.ops.mkldnn._reorder_convolution_weight(
                w, [1, 1], [1, 1], [1, 1], 1, list(x.shape))
            got = op(x, packed, b, [1, 1], [1, 1], [1, 1], 1, 'hardtanh', [0.0, 6.0], None)
            summed = torch.ops.mkldnn._convolution_pointwise.binary(
                x, other, packed, b, [1, 1], [1, 1], [1, 1], 1, 'add', None, 'relu', [], None)
            ref = F.conv2d(x, w, b, 1, 1)
        return (torch.allclose(got, ref.clamp(0, 6), atol=1e-5)
                and torch.allclose(summed, (ref + other).relu(), atol=1e-5))
    except (RuntimeError, AttributeError, TypeError):
        return False


def fused_activation(act: Optional[nn.Module]) -> Optional[tuple[str, list]]:
    """oneDNN's name and scalars for ``act`` (``('none', [])`` for no activation), or
    ``None`` if it has no fused equivalent."""
    if act is None or isinstance(act, nn.Identity):
        return 'none', []
    if isinstance(act, nn.Hardtanh):  # ReLU6 included
        return 'hardtanh', [float(act.min_val), float(act.max_val)]
    if isinstance(act, nn.LeakyReLU):
        return 'leaky_relu', [float(act.negative_slope)]
    simple = {nn.ReLU: 'relu', nn.SiLU: 'swish', nn.Sigmoid: 'sigmoid', nn.Tanh: 'tanh',
              nn.Hardswish: 'hardswish'}
    for cls, name in simple.items():
        if type(act) is cls:
            return name, []
    if type(act).__name__ == 'Swish' and type(act).__module__.startswith('mmcv.'):
        return 'swish', []  # mmcv's x * sigmoid(x)
    return None


class FusedConv(nn.Module):
    """``act(conv(x) [+ other])``, as one oneDNN call where it can run (see the module
    docstring), else ``F.conv2d``, the sum and ``act``.

    Args:
        conv: The conv, usually with BN folded in; shared, not copied. Only an
            ``nn.Conv2d`` with zero padding can take the fused route.
        act: The activation after it, or ``None``.

    Example:
        >>> import torch
        >>> from rfcr.deploy.fused import FusedConv
        >>> conv = torch.nn.Conv2d(8, 16, 1)
        >>> fused = FusedConv(conv, torch.nn.ReLU6())
        >>> x = torch.randn(1, 8, 10, 10)
        >>> with torch.no_grad():
        ...     print(torch.allclose(fused(x), conv(x).clamp(0, 6), atol=1e-6))
        True
    """

    def __init__(self, conv: nn.Module, act: Optional[nn.Module] = None) -> None:
        super().__init__()
        self.conv = conv
        self.act = act
        fusable = (isinstance(conv, nn.Conv2d) and conv.padding_mode == 'zeros'
                   and not isinstance(conv.padding, str))
        self._attr = fused_activation(act) if fusable else None
        self._args = ((list(conv.padding), list(conv.stride), list(conv.dilation), conv.groups)
                      if fusable else ())
        self._packed = _PackedCache()

    def _fused(self, x: Tensor) -> bool:
        w = self.conv.weight
        return (self._attr is not None and x.dim() == 4 and x.dtype == torch.float32
                and x.device.type == 'cpu' and w.dtype == torch.float32
                and eager_inference() and is_enabled())

    def forward(self, x: Tensor, other: Optional[Tensor] = None) -> Tensor:
        """``act(conv(x) + other)``; ``other`` (e.g. a residual) must have the output's
        shape."""
        if self._fused(x):
            padding, stride, dilation, groups = self._args
            weight = self._packed.get(self.conv.weight, x, self._args)
            attr, scalars = self._attr
            if other is None:
                return torch.ops.mkldnn._convolution_pointwise(
                    x, weight, self.conv.bias, padding, stride, dilation, groups, attr,
                    scalars, None)
            # The sum's epilogue takes no activation but ReLU: others run after it.
            unary = attr if attr in ('none', 'relu') else 'none'
            y = torch.ops.mkldnn._convolution_pointwise.binary(
                x, other, weight, self.conv.bias, padding, stride, dilation, groups, 'add',
                None, None if unary == 'none' else unary, [], None)
            return y if unary == attr or self.act is None else self.act(y)
        y = self.conv(x)
        if other is not None:
            y = y + other
        return y if self.act is None else self.act(y)


class _PackedCache:
    """oneDNN-reordered weights, one per input shape and format (at most 8), rebuilt when
    the weight tensor changes. Not part of the state dict; dropped on copy and pickle."""

    MAX_ENTRIES = 8

    def __init__(self) -> None:
        self.entries: dict = {}
        self.source: tuple = ()

    def get(self, weight: Tensor, x: Tensor, args: tuple) -> Tensor:
        source = (weight.data_ptr(), weight._version, weight.shape)
        if source != self.source:
            self.entries, self.source = {}, source
        key = (x.shape, x.is_contiguous(memory_format=torch.channels_last))
        packed = self.entries.get(key)
        if packed is None:
            if len(self.entries) >= self.MAX_ENTRIES:
                self.entries.pop(next(iter(self.entries)))
            padding, stride, dilation, groups = args
            packed = torch.ops.mkldnn._reorder_convolution_weight(
                weight.detach(), padding, stride, dilation, groups, list(x.shape))
            self.entries[key] = packed
        return packed

    def __deepcopy__(self, memo: dict) -> '_PackedCache':
        return _PackedCache()  # oneDNN tensors cannot be copied; they are rebuilt on use

    def __getstate__(self) -> dict:
        return {'entries': {}, 'source': ()}
