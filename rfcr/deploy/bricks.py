"""Deploy forms of the generic bricks: mmcv ``ConvModule`` (in :mod:`rfcr.deploy.conv`),
mmdet ``InvertedResidual`` and ``SELayer``, and conv -> BN (-> activation) runs in a plain
``nn.Sequential``.

Each folder takes a module of exactly its type and returns the module computing the same
function in eval mode, or the module itself where that cannot be done exactly (its parts
that can be are still folded). The results are plain modules with one code path.
"""
from __future__ import annotations

import copy
from collections import OrderedDict

import torch
from mmcv.cnn import ConvModule
from mmcv.cnn.bricks import HSigmoid, HSwish, Swish
from mmcv.cnn.bricks.conv2d_adaptive_padding import Conv2dAdaptivePadding
from torch import Tensor, nn

from mmdet.models.layers import InvertedResidual, SELayer

from .conv import ConvAct, conv_bn_refusal, fold_bn, fold_conv_module, plain_conv

__all__ = ['ACTIVATIONS', 'DeployInvertedResidual', 'DeploySE', 'fold_se', 'fold_sequential']

# Activation modules that fold_sequential moves into the ConvAct before them, as
# ConvModule's conv -> norm -> act becomes one ConvAct (nn.ReLU6 is an nn.Hardtanh).
ACTIVATIONS = (nn.ReLU, nn.Hardtanh, nn.LeakyReLU, nn.SiLU, nn.Sigmoid, nn.Tanh, nn.Hardswish,
               nn.Hardsigmoid, nn.GELU, nn.ELU, nn.Mish, Swish, HSwish, HSigmoid)


class DeploySE(nn.Module):
    """mmdet's ``SELayer`` at inference: ``x * act2(fc2(act1(fc1(mean(x)))))``, the two
    1x1 convs of the squeezed ``(N, C, 1, 1)`` map as the ``nn.Linear`` layers of the
    ``(N, C)`` vector they are.

    Args:
        se: The layer to fold (read, not modified).
    """

    def __init__(self, se: SELayer) -> None:
        super().__init__()
        self.fc1, self.act1 = _linear_of(se.conv1)
        self.fc2, self.act2 = _linear_of(se.conv2)

    def forward(self, x: Tensor) -> Tensor:
        s = self.act1(self.fc1(x.mean((2, 3))))  # (N, C // ratio)
        s = self.act2(self.fc2(s))[:, :, None, None]  # (N, C, 1, 1)
        return x * s


def _linear_of(module: ConvModule) -> tuple[nn.Linear, nn.Module]:
    conv = module.conv
    linear = nn.Linear(conv.in_channels, conv.out_channels, bias=conv.bias is not None)
    with torch.no_grad():
        linear.weight.copy_(conv.weight.flatten(1))
        if conv.bias is not None:
            linear.bias.copy_(conv.bias)
    act = copy.deepcopy(module.activate) if module.with_activation else nn.Identity()
    return linear.requires_grad_(False), act


def _is_plain_1x1_module(module: nn.Module) -> bool:
    return (type(module) is ConvModule and not module.with_norm
            and type(module.conv) in (nn.Conv2d, Conv2dAdaptivePadding)
            and module.conv.kernel_size == (1, 1) and module.conv.stride == (1, 1)
            and module.conv.groups == 1 and module.order[0] == 'conv')


def fold_se(se: SELayer) -> nn.Module:
    """``SELayer`` -> :class:`DeploySE` when both its convs are plain 1x1 convs without
    norm, else ``se`` with its ConvModules folded."""
    if (type(se) is SELayer and isinstance(se.global_avgpool, nn.AdaptiveAvgPool2d)
            and _is_plain_1x1_module(se.conv1) and _is_plain_1x1_module(se.conv2)):
        return DeploySE(se)
    for name in ('conv1', 'conv2'):
        setattr(se, name, fold_conv_module(getattr(se, name)))
    return se


class DeployInvertedResidual(nn.Module):
    """mmdet's ``InvertedResidual`` at inference: its layers before the linear conv in one
    ``nn.Sequential`` (expand conv, depthwise conv, squeeze-excite, the ones it has), then
    the linear conv, which adds the residual (:class:`ConvAct`'s ``other``); no gradient
    checkpointing, no drop-path (identity in eval mode). Layers that do not fold run as
    they are.

    Args:
        block: The block; its layers are read, not modified.
    """

    def __init__(self, block: InvertedResidual) -> None:
        super().__init__()
        if type(block) is not InvertedResidual:
            raise TypeError(f'expected an mmdet InvertedResidual, got {type(block).__name__}')
        layers = OrderedDict()
        if block.with_expand_conv:
            layers['expand_conv'] = fold_conv_module(block.expand_conv)
        layers['depthwise_conv'] = fold_conv_module(block.depthwise_conv)
        if block.with_se:
            layers['se'] = fold_se(block.se)
        self.layers = nn.Sequential(layers)
        self.linear_conv = fold_conv_module(block.linear_conv)
        self.with_res_shortcut = block.with_res_shortcut

    def forward(self, x: Tensor) -> Tensor:
        out = self.layers(x)
        if not self.with_res_shortcut:
            return self.linear_conv(out)
        if isinstance(self.linear_conv, ConvAct):
            return self.linear_conv(out, x)
        return x + self.linear_conv(out)


def fold_sequential(seq: nn.Sequential) -> nn.Sequential:
    """Fold every plain conv (:func:`~rfcr.deploy.conv.plain_conv`) followed by a BN in
    eval mode (and optionally one of :data:`ACTIVATIONS`) inside ``seq``, in place: the conv
    becomes a :class:`ConvAct`, the BN and activation identities. Only an exact
    ``nn.Sequential``, whose forward is known to chain its children."""
    if type(seq) is not nn.Sequential:
        return seq
    children = list(seq._modules.items())
    for i, (name, conv) in enumerate(children[:-1]):
        bn_name, bn = children[i + 1]
        if conv_bn_refusal(conv, bn) is not None:
            continue
        act = None
        if i + 2 < len(children) and isinstance(children[i + 2][1], ACTIVATIONS):
            act_name, act = children[i + 2]
            setattr(seq, act_name, nn.Identity())
        plain, padding = plain_conv(conv)
        setattr(seq, name, ConvAct(fold_bn(plain, bn), copy.deepcopy(act), padding))
        setattr(seq, bn_name, nn.Identity())
    return seq
