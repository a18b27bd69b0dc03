"""Convolutions at inference: BN folded into the conv before it (:func:`fold_bn`), mmcv's
``ConvModule`` as one plain :class:`ConvAct` (:func:`fold_conv_module`), and why a conv and
its norm cannot be folded exactly (:func:`conv_bn_refusal`, :func:`conv_module_refusal`).

A folded module is plain PyTorch with one code path: the same ops run with or without
autograd, in eager mode, under tracing and export. Which kernel runs them, and how fast, is
the runtime's job (``torch.compile``, ONNX Runtime, OpenVINO).
"""
from __future__ import annotations

import copy
from typing import Optional

import torch
import torch.nn.functional as F
from mmcv.cnn import ConvModule
from mmcv.cnn.bricks.conv2d_adaptive_padding import Conv2dAdaptivePadding
from torch import Tensor, nn
from torch.nn.modules.batchnorm import _BatchNorm
from torch.nn.modules.conv import _ConvNd

__all__ = ['ConvAct', 'TFSamePad', 'conv_bn_refusal', 'conv_module_refusal', 'fold_bn',
           'fold_conv_module', 'plain_conv']


class ConvAct(nn.Module):
    """``act(conv(padding(x)) + other)``: mmcv's ``ConvModule`` at inference, its norm folded
    into the conv (:func:`fold_conv_module`), with an optional sum (a residual) before the
    activation.

    Args:
        conv: The conv, usually from :func:`fold_bn`; shared, not copied.
        act: Activation applied after the conv (and the sum); ``None`` for none.
        padding: Explicit padding layer applied before the conv (``ConvModule``'s
            ``padding_layer`` for non-zero padding modes, or :class:`TFSamePad`); ``None``
            for none.

    Example:
        >>> import torch
        >>> from rfcr.deploy import ConvAct
        >>> conv = torch.nn.Conv2d(8, 16, 3, padding=1)
        >>> layer = ConvAct(conv, torch.nn.ReLU6())
        >>> x, residual = torch.randn(1, 8, 10, 10), torch.randn(1, 16, 10, 10)
        >>> layer(x, residual).shape
        torch.Size([1, 16, 10, 10])
        >>> torch.equal(layer(x, residual), (conv(x) + residual).clamp(0, 6))
        True
    """

    def __init__(self, conv: nn.Module, act: Optional[nn.Module] = None,
                 padding: Optional[nn.Module] = None) -> None:
        super().__init__()
        self.padding = padding
        self.conv = conv
        self.act = act

    def forward(self, x: Tensor, other: Optional[Tensor] = None) -> Tensor:
        """``other``, if given, must have the output's shape."""
        if self.padding is not None:
            x = self.padding(x)
        y = self.conv(x)
        if other is not None:
            y = y + other
        return y if self.act is None else self.act(y)


def fold_bn(conv: _ConvNd, bn: _BatchNorm) -> _ConvNd:
    """A copy of ``conv`` whose output equals ``bn(conv(x))`` with ``bn`` in eval mode.

    ``bn(y) = scale * y + shift`` per channel, with ``scale = gamma / sqrt(var + eps)`` and
    ``shift = beta - mean * scale``; both go into the conv's weight and bias. The copy keeps
    the conv's class, stride, padding, groups and padding mode. Computed in float64.

    Raises:
        ValueError: if ``bn`` keeps no running statistics or does not match ``conv``.
    """
    if getattr(conv, 'transposed', False):
        raise ValueError(f'conv={conv!r}: transposed convs are not folded')
    if bn.running_mean is None or bn.running_var is None:
        raise ValueError(f'bn={bn!r} has no running statistics (track_running_stats=False); '
                         'there is nothing to fold')
    if bn.num_features != conv.out_channels:
        raise ValueError(f'bn.num_features={bn.num_features} does not match '
                         f'conv.out_channels={conv.out_channels}')
    with torch.no_grad():
        dtype = conv.weight.dtype
        scale = bn.running_var.double().add(bn.eps).rsqrt()
        if bn.weight is not None:
            scale = scale * bn.weight.double()
        shift = -bn.running_mean.double() * scale
        if bn.bias is not None:
            shift = shift + bn.bias.double()
        if conv.bias is not None:
            shift = shift + conv.bias.double() * scale
        folded = copy.deepcopy(conv)
        weight = conv.weight.double() * scale.reshape(-1, *([1] * (conv.weight.dim() - 1)))
        folded.weight = nn.Parameter(weight.to(dtype), requires_grad=False)
        folded.bias = nn.Parameter(shift.to(dtype), requires_grad=False)
    return folded


class TFSamePad(nn.Module):
    """TensorFlow's "SAME" zero padding before a conv, computed per input size: what mmcv's
    ``Conv2dAdaptivePadding`` pads inside its forward (``pad // 2`` before, the rest after,
    so on even sizes a stride-2 conv pads 0 at top/left and 1 at bottom/right).

    The pads are integer arithmetic on the input's size, which ONNX export traces as such:
    a dynamic graph pads every input size right (mmcv's ``math.ceil`` / ``max`` would be
    frozen at the traced size)."""

    def __init__(self, kernel_size: tuple, stride: tuple, dilation: tuple) -> None:
        super().__init__()
        self.kernel_size, self.stride, self.dilation = kernel_size, stride, dilation

    def forward(self, x: Tensor) -> Tensor:
        pads = []
        for size, k, s, d in zip(x.shape[-2:], self.kernel_size, self.stride, self.dilation):
            # (ceil(size / s) - 1) * s + (k - 1) * d + 1 - size: never negative when the
            # window is at least the stride, else clipped at 0.
            pad = ((size + s - 1) // s - 1) * s + (k - 1) * d + 1 - size
            pads.append(pad if (k - 1) * d + 1 >= s else max(pad, 0))
        pad_h, pad_w = pads
        return F.pad(x, [pad_w // 2, pad_w - pad_w // 2, pad_h // 2, pad_h - pad_h // 2])

    def extra_repr(self) -> str:
        return f'kernel_size={self.kernel_size}, stride={self.stride}, dilation={self.dilation}'


def plain_conv(conv: nn.Module) -> Optional[tuple[nn.Conv2d, Optional[nn.Module]]]:
    """``conv`` as a plain ``nn.Conv2d`` (a copy, same weight and bias) and the padding
    module to run before it, or ``None`` if it is neither a plain conv nor one whose forward
    is exactly padding + conv2d of its weight. mmcv's ``Conv2dAdaptivePadding`` is: at
    stride 1 its padding is symmetric (odd kernels) and becomes the conv's own; at other
    strides a :class:`TFSamePad` runs first."""
    if type(conv) is nn.Conv2d:
        return copy.deepcopy(conv), None
    if type(conv) is not Conv2dAdaptivePadding:
        return None
    totals = [(k - 1) * d for k, d in zip(conv.kernel_size, conv.dilation)]
    symmetric = conv.stride == (1, 1) and all(t % 2 == 0 for t in totals)
    plain = nn.Conv2d(conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride,
                      tuple(t // 2 for t in totals) if symmetric else 0, conv.dilation,
                      conv.groups, conv.bias is not None)
    plain.load_state_dict(conv.state_dict())
    padding = None if symmetric else TFSamePad(conv.kernel_size, conv.stride, conv.dilation)
    return plain, padding


# Norm layers whose eval-mode forward is the affine map of their running statistics.
FOLDABLE_NORMS = (nn.BatchNorm2d, nn.SyncBatchNorm)


def conv_bn_refusal(conv: nn.Module, bn: nn.Module) -> Optional[str]:
    """Why ``bn(conv(x))`` cannot be folded into one conv exactly, or ``None`` if it can:
    ``conv`` must be a plain ``nn.Conv2d`` (or mmcv's ``Conv2dAdaptivePadding``, a padding
    and a plain conv: :func:`plain_conv`) and ``bn`` a BatchNorm in eval mode with running
    statistics of ``conv``'s output channels."""
    if type(conv) not in (nn.Conv2d, Conv2dAdaptivePadding):
        return (f'{type(conv).__name__} is not a plain nn.Conv2d (its forward is not conv2d '
                'of its weight)')
    if type(bn) not in FOLDABLE_NORMS:
        return f'{type(bn).__name__} is not a BatchNorm'
    if bn.training:
        return 'its BN is in train mode (it normalizes with batch statistics); call eval() first'
    if bn.running_mean is None or bn.running_var is None:
        return 'its BN keeps no running statistics (track_running_stats=False)'
    if bn.num_features != conv.out_channels:
        return f'BN num_features={bn.num_features} != conv out_channels={conv.out_channels}'
    return None


def conv_module_refusal(module: ConvModule) -> Optional[str]:
    """Why :func:`fold_conv_module` leaves ``module`` as it is, or ``None``."""
    present = {'conv': True, 'norm': module.with_norm, 'act': module.with_activation}
    order = [name for name in module.order if present[name]]
    if order != [name for name in ('conv', 'norm', 'act') if present[name]]:
        return f'order={module.order!r} is not conv -> norm -> act'
    if getattr(module, 'with_spectral_norm', False):
        return 'spectral norm recomputes the weight at every call'
    if module.with_explicit_padding and type(module.conv) is not nn.Conv2d:
        return f'a padding layer before a {type(module.conv).__name__}'
    if module.with_norm:
        return conv_bn_refusal(module.conv, module.norm)
    return None


def fold_conv_module(module: ConvModule) -> nn.Module:
    """mmcv ``ConvModule`` (conv -> BN -> act) -> :class:`ConvAct` with the BN folded into
    the conv; ``module`` unchanged where :func:`conv_module_refusal` gives a reason. A
    ConvModule without norm keeps a conv :func:`plain_conv` does not know (any class, as
    it is) in the :class:`ConvAct`."""
    if type(module) is not ConvModule or conv_module_refusal(module) is not None:
        return module
    conv, padding = plain_conv(module.conv) or (copy.deepcopy(module.conv), None)
    if module.with_norm:
        conv = fold_bn(conv, module.norm)
    conv.requires_grad_(False)
    act = copy.deepcopy(module.activate) if module.with_activation else None
    if module.with_explicit_padding:
        padding = copy.deepcopy(module.padding_layer)
    return ConvAct(conv, act, padding)
