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
(:class:`~rfcr.models.layers.FusedConv`) where that is exact and pays, else as
``F.conv2d`` + the activation (autograd, tracing and ONNX export, other devices and dtypes).

The models under ``rfcr/models`` are not touched: folding reads their public structure
(mmcv's ``ConvModule``, mmdet's ``InvertedResidual`` and ``SELayer``, the nodes of
``YOLOReTNeck``) and builds new modules from it. ``DeployRFCR``, ``fold_bn`` and the fused
conv layers live with the models (:mod:`rfcr.models.layers.fused`): RFCR's own eval fast
path runs its ``DeployRFCR``.
"""
from __future__ import annotations

import copy
from collections import OrderedDict

import torch
from mmcv.cnn import ConvModule
from torch import Tensor, nn

from mmdet.models.layers import InvertedResidual, SELayer

from ..models.layers.fused import ConvAct, fold_bn, fold_conv_module
from ..models.layers.folded import FoldedInference
from ..models.layers.resize import eager_inference
from ..models.necks.rfcr import RFCR, DeployRFCR
from ..models.necks.yoloret_neck import YOLOReTNeck

__all__ = ['ConvAct', 'DeployInvertedResidual', 'DeployRFCR', 'DeploySE', 'fold_bn',
           'switch_to_deploy']


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


# Modules that fold into a deploy module of their own; checked in this order.
_FOLDERS = (
    (RFCR, DeployRFCR),
    (ConvModule, fold_conv_module),
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
    if isinstance(module, FoldedInference):  # already folded: no eval-time copy of it
        module._is_folded_copy = True
    module.eval()  # not `return module.eval()`: mmdet's MobileNetV2.train() returns None
    return module
