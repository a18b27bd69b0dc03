"""Inference-time folding: BN into the convs before it, RFCR's fusion scalars into its
collect convs, YOLO-ReT's consecutive linear maps into one, training-only machinery
(checkpointing, drop-path, BN statistics) dropped.

:func:`switch_to_deploy` rewrites a model in place; the rewritten modules compute, in eval
mode, what the originals compute, up to float rounding::

    ConvModule(conv - BN - act)        ->  ConvAct(conv with BN folded in - act)
    mmdet InvertedResidual             ->  DeployInvertedResidual (its convs folded, the
                                           residual summed in the last conv's epilogue)
    mmdet SELayer (1x1 convs)          ->  DeploySE (two matrix products)
    RFCR                               ->  DeployRFCR (fusion scalars in the collect convs)
    YOLOReTNeck                        ->  DeployYOLOReTNeck (linear maps composed,
                                           :mod:`rfcr.deploy.compose`)
    YOLO-ReT detector (RFCR + YOLOReTNeck + YOLOReTHead)
                                       ->  one DeployYOLOReTNeck returning the predictions

Every conv of these modules runs as one oneDNN call with its bias, activation and sum
(:class:`~rfcr.deploy.fused.FusedConv`) where that is exact, else as ``F.conv2d`` + the
activation (autograd, tracing and ONNX export, other devices and dtypes).

The models under ``rfcr/models`` are not touched: folding reads their public structure
(``RFCR.collect_convs``, ``RFCR.normalized_fusion_weights()``, ``RFCR.fuse_conv``, mmcv's
``ConvModule``, mmdet's ``InvertedResidual`` and ``SELayer``) and builds new modules from it.
"""
from __future__ import annotations

import copy
from collections import OrderedDict
from typing import Optional, Sequence

import torch
from mmcv.cnn import ConvModule
from torch import Tensor, nn
from torch.nn.modules.batchnorm import _BatchNorm
from torch.nn.modules.conv import _ConvNd

from mmdet.models.layers import InvertedResidual, SELayer

from ..models.layers import max_pool_to, upsample_to
from ..models.layers.resize import eager_inference
from ..models.necks.rfcr import RFCR
from ..models.necks.yoloret_neck import YOLOReTNeck
from .fused import FusedConv

__all__ = ['ConvAct', 'DeployInvertedResidual', 'DeployRFCR', 'fold_bn', 'switch_to_deploy']


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
    as one fused oneDNN call where possible (:class:`~rfcr.deploy.fused.FusedConv`).

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


def _fold_conv_module(module: ConvModule) -> nn.Module:
    """``ConvModule`` -> :class:`ConvAct`, or ``module`` unchanged when it cannot be folded
    (a norm other than BN, BN without running statistics, an order other than
    conv -> norm -> act, or spectral norm, which recomputes the weight at every call)."""
    present = {'conv': True, 'norm': module.with_norm, 'act': module.with_activation}
    order = [name for name in module.order if present[name]]
    if (order != [name for name in ('conv', 'norm', 'act') if present[name]]
            or not isinstance(module.conv, _ConvNd)
            or getattr(module, 'with_spectral_norm', False)):
        return module
    conv = module.conv
    if module.with_norm:
        norm = module.norm
        if (not isinstance(norm, _BatchNorm) or norm.running_mean is None
                or getattr(conv, 'transposed', False)):
            return module
        conv = fold_bn(conv, norm)
    else:
        conv = copy.deepcopy(conv).requires_grad_(False)
    act = copy.deepcopy(module.activate) if module.with_activation else None
    padding = copy.deepcopy(module.padding_layer) if module.with_explicit_padding else None
    return ConvAct(conv, act, padding)


class DeploySE(nn.Module):
    """mmdet's ``SELayer`` at inference: ``x * act2(fc2(act1(fc1(mean(x)))))`` with the
    two 1x1 convs of the squeezed vector as matrix products (a 1x1 map is all per-call
    overhead for a conv kernel).

    Args:
        se: The layer to fold (read, not modified).
        inplace: Scale ``x`` in place where no autograd or tracer sees it. Set by an owner
            whose ``x`` is a temporary of its own (the depthwise conv's output).
    """

    def __init__(self, se: SELayer, inplace: bool = False) -> None:
        super().__init__()
        self.fc1, self.act1 = _linear_of(se.conv1)
        self.fc2, self.act2 = _linear_of(se.conv2)
        self.inplace = inplace

    def forward(self, x: Tensor) -> Tensor:
        s = self.act1(self.fc1(x.mean((2, 3))))  # (N, C // ratio)
        s = self.act2(self.fc2(s))[:, :, None, None]  # (N, C, 1, 1)
        return x.mul_(s) if self.inplace and eager_inference() else x * s


def _linear_of(module: ConvModule) -> tuple[nn.Linear, nn.Module]:
    conv = module.conv
    linear = nn.Linear(conv.in_channels, conv.out_channels, bias=conv.bias is not None)
    with torch.no_grad():
        linear.weight.copy_(conv.weight.flatten(1))
        if conv.bias is not None:
            linear.bias.copy_(conv.bias)
    act = copy.deepcopy(module.activate) if module.with_activation else nn.Identity()
    return linear.requires_grad_(False), act


def _fold_se(se: SELayer) -> nn.Module:
    """``SELayer`` -> :class:`DeploySE` when both its convs are plain 1x1 convs
    (no norm), else ``se`` with its convs folded."""
    convs = (se.conv1, se.conv2)
    if all(isinstance(m, ConvModule) and not m.with_norm and type(m.conv) is nn.Conv2d
           and m.conv.kernel_size == (1, 1) and m.conv.groups == 1 for m in convs):
        return DeploySE(se)
    for name in ('conv1', 'conv2'):
        setattr(se, name, switch_to_deploy(getattr(se, name)))
    return se


class DeployInvertedResidual(nn.Module):
    """mmdet's ``InvertedResidual`` at inference: its layers before the linear conv in one
    ``nn.Sequential`` (expand conv, depthwise conv, squeeze-excite, the ones it has), then
    the linear conv with the residual summed in its epilogue; no gradient checkpointing,
    no drop-path (identity in eval mode)."""

    def __init__(self, block: InvertedResidual) -> None:
        super().__init__()
        layers = OrderedDict()
        if block.with_expand_conv:
            layers['expand_conv'] = block.expand_conv
        layers['depthwise_conv'] = block.depthwise_conv
        if block.with_se:
            layers['se'] = block.se
        self.layers = nn.Sequential(
            OrderedDict((name, switch_to_deploy(m)) for name, m in layers.items()))
        if isinstance(getattr(self.layers, 'se', None), DeploySE):
            self.layers.se.inplace = True  # it scales the depthwise conv's fresh output
        self.linear_conv = switch_to_deploy(block.linear_conv)
        self.with_res_shortcut = block.with_res_shortcut

    def forward(self, x: Tensor) -> Tensor:
        out = self.layers(x)
        if not self.with_res_shortcut:
            return self.linear_conv(out)
        if isinstance(self.linear_conv, ConvAct):
            return self.linear_conv(out, x)
        return x + self.linear_conv(out)


class DeployRFCR(nn.Module):
    """:class:`~rfcr.models.RFCR` with its fusion scalars folded into its collect convs.

    RFCR weights each collected map by a scalar ``w`` (after its ``fusion_norm``) and sums.
    The scalar moves into the 1x1 collect conv, so the weighted sum becomes a plain sum:

    - stride 4 (pool, then conv), 16 (conv) and 32 (conv, then nearest upsampling): ``w``
      commutes with the resize, so the conv becomes ``w * conv`` for any sign of ``w``;
    - stride 8 (conv, then max-pool): ``w * maxpool(y) = maxpool(w * y)`` only for
      ``w >= 0``; for ``w < 0`` max becomes min. The conv becomes ``|w| * conv`` and the
      pooled map is subtracted instead of added, which is exact for any sign and costs
      nothing: a subtraction replaces an addition.

    The separable fusion conv has its BNs folded (:class:`ConvAct`). Inputs, outputs,
    ``in_channels``, ``out_channels`` and ``out_indices`` are those of the RFCR it is built
    from; resizes use the same exact-size helpers, so odd input sizes work the same.

    Args:
        rfcr: The trained RFCR. It is read, not modified.

    Example:
        >>> import torch
        >>> from rfcr.models import RFCR
        >>> from rfcr.deploy import DeployRFCR
        >>> neck = RFCR(in_channels=(24, 72, 120)).eval()
        >>> neck.fusion_weights.data = torch.tensor([-0.5, 1.0, 2.0])  # stride 8 negative
        >>> feats = (torch.rand(1, 24, 41, 41), torch.rand(1, 72, 21, 21),
        ...          torch.rand(1, 120, 11, 11))
        >>> folded = DeployRFCR(neck)
        >>> with torch.no_grad():
        ...     print(max(float((a - b).abs().max()) for a, b in zip(neck(feats), folded(feats)))
        ...           < 1e-5)
        True
    """

    def __init__(self, rfcr: RFCR) -> None:
        super().__init__()
        self.in_channels = rfcr.in_channels
        self.out_channels = rfcr.out_channels
        self.out_indices = tuple(rfcr.out_indices)
        self.shortcut_channels = rfcr.shortcut_channels
        self.input_channels = rfcr.input_channels
        self.num_inputs = len(rfcr.collect_convs)
        with torch.no_grad():
            weights = rfcr.normalized_fusion_weights().detach().double()
        if weights.numel() != self.num_inputs:
            raise ValueError(f'rfcr has {self.num_inputs} collect convs but '
                             f'{weights.numel()} fusion weights')
        stride8 = self.num_inputs - 3  # input order: optional stride 4, then 8, 16, 32
        # The stride-8 map is max-pooled after its conv: fold |w| there, keep the sign apart.
        self.subtract_stride8 = bool(weights[stride8] < 0)
        scales = weights.clone()
        scales[stride8] = scales[stride8].abs()
        convs = []
        for conv, scale in zip(rfcr.collect_convs, scales):
            folded = copy.deepcopy(conv).requires_grad_(False)
            with torch.no_grad():
                folded.weight.copy_((conv.weight.double() * scale).to(conv.weight.dtype))
                if folded.bias is not None:
                    folded.bias.copy_((conv.bias.double() * scale).to(conv.bias.dtype))
            convs.append(FusedConv(folded))
        self.collect_convs = nn.ModuleList(convs)
        self.fuse_conv = switch_to_deploy(copy.deepcopy(rfcr.fuse_conv))

    def forward(self, inputs: Sequence[Tensor]) -> tuple[Tensor, ...]:
        if len(inputs) != self.num_inputs:
            raise ValueError(f'DeployRFCR expects {self.num_inputs} inputs, got {len(inputs)}')
        return self.redistribute(inputs, self.fuse(inputs))

    def fuse(self, inputs: Sequence[Tensor]) -> Tensor:
        """:meth:`RFCR.fuse <rfcr.models.RFCR.fuse>`, folded."""
        x8, x16, x32 = inputs[-3:]
        size16 = x16.shape[-2:]
        conv8, conv16, conv32 = self.collect_convs[-3:]
        fused = upsample_to(conv32(x32), size16, 2, 'stride-32 input')
        if self.num_inputs == 4:
            fused = self.collect_convs[0](max_pool_to(inputs[0], size16, 4, 'shortcut input'),
                                          fused)
        fused = conv16(x16, fused)  # the sum in the conv's epilogue
        pooled = max_pool_to(conv8(x8), size16, 2, 'stride-8 input')
        fused = fused - pooled if self.subtract_stride8 else fused + pooled
        return self.fuse_conv(fused)  # (N, fuse_channels, H16, W16)

    redistribute = RFCR.redistribute  # the same concatenations, reading out_indices


# Modules that fold into a deploy module of their own; checked in this order.
_FOLDERS = (
    (RFCR, DeployRFCR),
    (ConvModule, _fold_conv_module),
    (InvertedResidual, DeployInvertedResidual),
    (SELayer, _fold_se),
)


def switch_to_deploy(module: nn.Module) -> nn.Module:
    """Fold ``module`` for inference, in place, and return it in eval mode.

    Every :class:`~rfcr.models.RFCR`, :class:`~rfcr.models.YOLOReTNeck`, mmcv
    ``ConvModule`` (conv -> BN -> act), mmdet ``InvertedResidual`` and ``SELayer`` inside
    ``module`` is replaced by its deploy module (:class:`DeployRFCR`,
    :class:`~rfcr.deploy.DeployYOLOReTNeck`, :class:`ConvAct`,
    :class:`DeployInvertedResidual`, :class:`DeploySE`). A YOLO-ReT detector's RFCR, neck
    and prediction convs become one ``DeployYOLOReTNeck`` returning the prediction maps
    (the head's convs become identities,
    :func:`~rfcr.deploy.compose.fold_yoloret_detector`). Everything else is kept, so a
    :class:`~rfcr.models.TruncatedMobileNetV2`, :class:`~rfcr.models.YOLOReTHead` or a
    whole mmdet detector keeps its class, attributes and ``forward`` (a detector still
    ``predict``\\ s, and exports). The outputs equal those of the original in eval mode
    (BN running statistics, the fusion weights after ``fusion_norm``), up to float
    rounding. Calling it again is a no-op. The result is for inference only: it has no BN
    to train and no fusion weights.

    Args:
        module: A model or any part of one.

    Returns:
        ``module`` itself, or its replacement when ``module`` is itself one of the folded
        types (an ``RFCR`` becomes a ``DeployRFCR``): always use the return value.

    Example:
        >>> import torch
        >>> from rfcr.models import RFCR, TruncatedMobileNetV2
        >>> from rfcr.deploy import switch_to_deploy
        >>> model = torch.nn.Sequential(TruncatedMobileNetV2(widen_factor=0.5),
        ...                             RFCR(in_channels=(16, 48, 80))).eval()
        >>> x = torch.rand(1, 3, 97, 97)
        >>> with torch.no_grad():
        ...     expected = model(x)
        ...     model = switch_to_deploy(model)
        ...     outs = model(x)
        >>> type(model[1]).__name__
        'DeployRFCR'
        >>> any(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())
        False
        >>> max(float((a - b).abs().max()) for a, b in zip(outs, expected)) < 1e-4
        True
    """
    if not isinstance(module, nn.Module):
        raise TypeError(f'module must be a torch.nn.Module, got {type(module).__name__}')
    # Imported here: compose builds on this module's folders.
    from .compose import DeployYOLOReTNeck, fold_yoloret_detector
    fold_yoloret_detector(module)  # the head's prediction convs into the neck
    for cls, fold in _FOLDERS + ((YOLOReTNeck, DeployYOLOReTNeck), ):
        if isinstance(module, cls):
            folded = fold(module)
            folded.eval()
            return folded
    for name, child in list(module.named_children()):
        folded = switch_to_deploy(child)
        if folded is not child:
            setattr(module, name, folded)
    module.eval()  # not `return module.eval()`: mmdet's MobileNetV2.train() returns None
    return module
