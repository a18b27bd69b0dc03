"""Eager convolutions with bias, activation and an optional sum fused into one oneDNN call,
and BN folding: the inference layers of :mod:`rfcr.deploy`.

PyTorch eager runs ``conv -> + bias -> activation`` as separate passes over the output,
and at one thread it sends 1x1 convs to its THNN kernel, whose bias fill alone is a
full strided pass (``ConvParams::use_mkldnn``). On the maps of a detector at 320x320 those
passes cost as much as the convolutions. oneDNN applies bias, activation and a sum in the
convolution's epilogue; PyTorch exposes that as ``torch.ops.mkldnn.
_convolution_pointwise`` (what ``torch.compile`` emits on CPU). :class:`FusedConv` calls
it with the weight reordered once per input shape into oneDNN's blocked layout.

Measured on an Intel Xeon (AVX-512), 1 thread, channels_last, one call each, interleaved
(``min`` of 200 calls):
a 1x1 128->255 conv + bias + ReLU6 at 40x40 1.05 ms vs 1.50 ms unfused; 16->96 at 160x160
2.0 ms vs 4.2 ms; a 3x3 depthwise + bias + ReLU6 at 80x80 0.73 ms vs 0.96 ms. But a oneDNN
call costs ~50 us more than THNN's, so at one thread a 1x1 conv whose output has fewer
than :data:`MIN_FUSED_1X1_OUTPUT` elements stays on ``F.conv2d`` (THNN), as PyTorch
itself would run it: 24->48 at 40x40 takes 0.10 ms there against 0.16 ms fused.

Small 1x1 convs on channels_last inputs take a third route at any thread count: a 1x1
conv of an NHWC map is one matrix product, ``torch.addmm(bias, x (HW x Cin), W^T)``, whose
result is already the NHWC output (no copy), then the activation in place. Below
:data:`MAX_MATMUL_1X1_OUTPUT` output elements that beats oneDNN's call (measured on the
Xeon, 2 threads, channels_last, medians of 300 calls, + ReLU6: 24->48 at 40x40 0.07 ms vs 0.16 ms
fused, 0.19 ms ``F.conv2d``; 64->384 at 20x20 0.18 vs 0.28 ms; 512->255 at 10x10 0.30 vs
0.36 ms); above it oneDNN's blocked kernels win (128->255 at 40x40 1.10 vs 0.96 ms). The
thresholds differ per CPU (:data:`ROUTE_THRESHOLDS`): on an AVX2-only AMD EPYC oneDNN takes
over from the matrix product at about 120,000 outputs, not 200,000.
``benchmarks/fused_routes.py`` measures every route on the shapes of YOLO-ReT.

The fused and matrix routes run only where they give the reference values (up to float
rounding): a plain ``nn.Conv2d`` (not a subclass, whose forward may differ), float32 CPU
tensors, no autograd, no tracer (:func:`~rfcr.deploy.resize.eager_inference`), a PyTorch
built with oneDNN whose op passes a one-time self-check. Everything else (conv subclasses,
tracing and ONNX export, autograd, CUDA, other dtypes) calls the conv module itself, then
the activation.

The output of a fused conv is channels_last whatever the input's format: oneDNN's
blocked weights pick that layout.
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

from ..utils.cpu import cpu_flags
from .resize import eager_inference

__all__ = ['MAX_MATMUL_1X1_OUTPUT', 'MIN_FUSED_1X1_OUTPUT', 'ROUTE_THRESHOLDS', 'ConvAct',
           'FusedConv', 'TFSamePad', 'conv_bn_refusal', 'fold_bn', 'fold_conv_module',
           'fused_activation', 'onednn_available', 'plain_conv', 'route_thresholds']

_checked: dict[str, bool] = {}

# Route thresholds per CPU family, in output elements of a 1x1 conv (measured with
# benchmarks/fused_routes.py; the CPU's own vector width decides, as oneDNN's and MKL's
# kernels dispatch on it):
# - min_fused_1x1_output: at one thread, the smallest output for which a 1x1 conv takes
#   the oneDNN route; below it oneDNN's per-call overhead outweighs the bias and
#   activation passes it saves, and F.conv2d (THNN) runs;
# - max_matmul_1x1_output: the largest output for which a 1x1 conv on a channels_last
#   input runs as one matrix product (torch.addmm) rather than a oneDNN call.
ROUTE_THRESHOLDS = {
    # Intel Xeon (AVX-512), see the module docstring.
    'avx512': dict(min_fused_1x1_output=100_000, max_matmul_1x1_output=200_000),
    # AMD EPYC (AVX2), 2 threads: 144->24 at 80x80 (153,600 outputs) 0.86x the reference
    # on oneDNN, 1.13x as a matrix product; 384->256 at 20x20 (102,400) 0.83x vs 0.82x.
    # 1 thread: small 1x1 convs 1.2-1.5x slower on oneDNN, about even as a product.
    'avx2': dict(min_fused_1x1_output=100_000, max_matmul_1x1_output=120_000),
}


def route_thresholds() -> dict:
    """:data:`ROUTE_THRESHOLDS` of this CPU: ``avx512`` where it has AVX-512, else
    ``avx2`` (measured on AVX2-only CPUs; the best guess for others)."""
    return ROUTE_THRESHOLDS['avx512' if 'avx512f' in cpu_flags() else 'avx2']


MIN_FUSED_1X1_OUTPUT = route_thresholds()['min_fused_1x1_output']
MAX_MATMUL_1X1_OUTPUT = route_thresholds()['max_matmul_1x1_output']


def onednn_available() -> bool:
    """Whether oneDNN's fused conv op exists here and passes a one-time self-check."""
    if 'ok' not in _checked:
        _checked['ok'] = _self_check()
    return _checked['ok']


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
        conv: The conv, usually with BN folded in; shared, not copied. Only a plain
            ``nn.Conv2d`` with zero padding can take the fast routes.
        act: The activation after it, or ``None``.

    Example:
        >>> import torch
        >>> from rfcr.deploy import FusedConv
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
        # A subclass (mmcv's ConvWS, Conv2dAdaptivePadding, ...) computes something else
        # than conv2d of its weight: it always runs its own forward.
        fusable = (type(conv) is nn.Conv2d and conv.padding_mode == 'zeros'
                   and not isinstance(conv.padding, str))
        self._attr = fused_activation(act) if fusable else None
        self._args = ((list(conv.padding), list(conv.stride), list(conv.dilation), conv.groups)
                      if fusable else ())
        self._pointwise = fusable and conv.kernel_size == (1, 1) and conv.stride == (1, 1)
        self._packed = _PackedCache()

    def _eligible(self, x: Tensor) -> bool:
        """Whether a fast route (oneDNN or matrix product) may run on ``x`` at all: a
        fusable conv and activation, float32 CPU tensors, no autograd or tracer."""
        return (self._attr is not None and x.dim() == 4 and x.dtype == torch.float32
                and x.device.type == 'cpu' and self.conv.weight.dtype == torch.float32
                and eager_inference() and onednn_available())

    def _onednn_fits(self, x: Tensor) -> bool:
        """Given :meth:`_eligible`: whether the oneDNN route runs on ``x``."""
        w = self.conv.weight
        if w.is_inference():  # made under inference_mode: no version counter to watch
            return False
        # One thread, small 1x1 conv: THNN (what F.conv2d picks there) is cheaper.
        return not (self._pointwise and torch.get_num_threads() == 1
                    and x.numel() // x.shape[1] * w.shape[0] < MIN_FUSED_1X1_OUTPUT)

    def _matmul_fits(self, x: Tensor) -> bool:
        """Given :meth:`_eligible`: whether the 1x1 conv of ``x`` runs as one matrix
        product (see the module doc)."""
        return (self._pointwise and self.conv.groups == 1
                and x.is_contiguous(memory_format=torch.channels_last)
                and x.numel() // x.shape[1] * self.conv.out_channels <= MAX_MATMUL_1X1_OUTPUT)

    def _matmul(self, x: Tensor) -> bool:
        """Whether a 1x1 conv of ``x`` runs as one matrix product."""
        return self._eligible(x) and self._matmul_fits(x)

    def _forward_matmul(self, x: Tensor, other: Optional[Tensor]) -> Tensor:
        n, c, h, w = x.shape
        k = self.conv.out_channels
        rows = x.permute(0, 2, 3, 1).reshape(-1, c)  # a view: x is channels_last
        weight = self.conv.weight.reshape(k, c).t()  # transposed view, no copy
        bias = self.conv.bias
        if other is not None:  # the sum goes in as addmm's input (a copy if not NHWC)
            other = other.permute(0, 2, 3, 1).reshape(-1, k)
            bias = other if bias is None else other + bias
        y = torch.mm(rows, weight) if bias is None else torch.addmm(bias, rows, weight)
        y = y.view(n, h, w, k).permute(0, 3, 1, 2)  # NCHW view of NHWC data: channels_last
        attr, scalars = self._attr
        if attr == 'none':
            return y
        if attr == 'relu':
            return y.relu_()
        if attr == 'hardtanh':
            return y.clamp_(*scalars)
        return self.act(y)

    def forward(self, x: Tensor, other: Optional[Tensor] = None) -> Tensor:
        """``act(conv(x) + other)``; ``other`` (e.g. a residual) must have the output's
        shape."""
        eligible = self._eligible(x)  # checked once per call: the routes share it
        if eligible and self._matmul_fits(x):
            return self._forward_matmul(x, other)
        if eligible and self._onednn_fits(x):
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
        fused = copy.deepcopy(conv)
        weight = conv.weight.double() * scale.reshape(-1, *([1] * (conv.weight.dim() - 1)))
        fused.weight = nn.Parameter(weight.to(dtype), requires_grad=False)
        fused.bias = nn.Parameter(shift.to(dtype), requires_grad=False)
    return fused


class ConvAct(FusedConv):
    """A conv (norm folded in) then an optional activation: ``ConvModule`` at inference,
    as one fused oneDNN call where possible (:class:`FusedConv`).

    Args:
        conv: The conv, usually from :func:`fold_bn`.
        act: Activation applied after it; ``None`` for none.
        padding: Explicit padding layer applied before the conv (``ConvModule``'s
            ``padding_layer`` for non-zero padding modes); ``None`` for none.
    """

    def __init__(self, conv: nn.Module, act: Optional[nn.Module] = None,
                 padding: Optional[nn.Module] = None) -> None:
        super().__init__(conv, act)
        self.padding = padding

    def forward(self, x: Tensor, other: Optional[Tensor] = None) -> Tensor:
        if self.padding is not None:
            x = self.padding(x)
        return super().forward(x, other)


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
    it is) and fuses the activation only."""
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
