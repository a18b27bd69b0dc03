"""Map torchvision / timm / mmpretrain / mmdet MobileNetV2 checkpoints onto mmdet's key layout.

mmdet's layout (which :class:`TruncatedMobileNetV2` uses) names a stage ``layer{s}`` and a
block's convs ``expand_conv`` / ``depthwise_conv`` / ``linear_conv``, each an mmcv
``ConvModule`` with ``.conv`` and ``.bn``. The stem is ``conv1`` and the 1280-channel
conv ``conv2``.
"""
from __future__ import annotations

import re
from typing import Mapping, Sequence

from torch import Tensor

# Names of a block's ConvModules, in order, with and without the 1x1 expansion.
_BLOCK_CONVS = {True: ('expand_conv', 'depthwise_conv', 'linear_conv'),
                False: ('depthwise_conv', 'linear_conv')}


def _block_table(arch: Sequence[Sequence[int]]) -> list[tuple[str, bool]]:
    """``[(f'layer{s}.{b}', has_expand_conv)]`` for every block, in network order."""
    return [(f'layer{s + 1}.{b}', expand_ratio != 1)
            for s, (expand_ratio, _, num_blocks, _) in enumerate(arch)
            for b in range(num_blocks)]


def _from_torchvision(key: str, blocks: list[tuple[str, bool]]) -> str | None:
    """``features.i...`` -> mmdet name; ``None`` for keys of the classifier.

    Keys outside MobileNetV2's layout are returned unchanged, so that they are reported
    as unexpected.
    """
    if key.startswith('classifier.'):
        return None
    m = re.fullmatch(r'features\.(\d+)\.(\d)\.(.+)', key)
    if m and int(m.group(1)) in (0, len(blocks) + 1) and int(m.group(2)) < 2:
        # Stem / final 1x1 conv: Conv2d, BN, ReLU6.
        module = 'conv1' if int(m.group(1)) == 0 else 'conv2'
        return f'{module}.{("conv", "bn")[int(m.group(2))]}.{m.group(3)}'
    # Inside a torchvision block `conv` is a Sequential: [Conv-BN-ReLU6 (expand)],
    # Conv-BN-ReLU6 (depthwise), Conv2d (project), BN (project).
    m = re.fullmatch(r'features\.(\d+)\.conv\.(\d+)\.(?:([01])\.)?(.+)', key)
    if m is None or not 1 <= int(m.group(1)) <= len(blocks):
        return key
    prefix, expand = blocks[int(m.group(1)) - 1]
    i, j, param = int(m.group(2)), m.group(3), m.group(4)
    convs = _BLOCK_CONVS[expand]
    last = len(convs) - 1  # index of the projection Conv2d; its BN is last + 1
    if i < last and j is not None:
        return f'{prefix}.{convs[i]}.{("conv", "bn")[int(j)]}.{param}'
    if last <= i <= last + 1 and j is None:
        return f'{prefix}.linear_conv.{("conv", "bn")[i - last]}.{param}'
    return key


# timm's names inside a block, by whether the block has the 1x1 expansion
# (InvertedResidual: conv_pw, bn1, conv_dw, bn2, conv_pwl, bn3) or not (the first stage's
# DepthwiseSeparableConv: conv_dw, bn1, conv_pw, bn2).
_TIMM_BLOCK = {
    True: {'conv_pw': 'expand_conv.conv', 'bn1': 'expand_conv.bn', 'conv_dw': 'depthwise_conv.conv',
           'bn2': 'depthwise_conv.bn', 'conv_pwl': 'linear_conv.conv', 'bn3': 'linear_conv.bn'},
    False: {'conv_dw': 'depthwise_conv.conv', 'bn1': 'depthwise_conv.bn',
            'conv_pw': 'linear_conv.conv', 'bn2': 'linear_conv.bn'},
}
_TIMM_TOP = {'conv_stem': 'conv1.conv', 'bn1': 'conv1.bn', 'conv_head': 'conv2.conv',
             'bn2': 'conv2.bn'}


def _timm_depth(keys, num_stages: int) -> tuple[int, ...]:
    """Blocks per stage of a timm checkpoint (``blocks.{stage}.{block}.*``)."""
    depth = [0] * num_stages
    for key in keys:
        m = re.match(r'blocks\.(\d+)\.(\d+)\.', key)
        if m:
            stage = int(m.group(1))
            depth.extend([0] * (stage + 1 - len(depth)))
            depth[stage] = max(depth[stage], int(m.group(2)) + 1)
    return tuple(depth)


def _from_timm(key: str, arch: Sequence[Sequence[int]]) -> str | None:
    """timm ``mobilenetv2_*`` name -> mmdet name; ``None`` for the classifier."""
    if key.startswith('classifier.'):
        return None
    m = re.fullmatch(r'(conv_stem|bn1|conv_head|bn2)\.(.+)', key)
    if m:
        return f'{_TIMM_TOP[m.group(1)]}.{m.group(2)}'
    m = re.fullmatch(r'blocks\.(\d+)\.(\d+)\.(\w+)\.(.+)', key)
    if m is None or int(m.group(1)) >= len(arch):
        return key
    stage, block, module, param = int(m.group(1)), m.group(2), m.group(3), m.group(4)
    names = _TIMM_BLOCK[arch[stage][0] != 1]
    return f'layer{stage + 1}.{block}.{names[module]}.{param}' if module in names else key


def _from_mmpretrain(key: str, blocks: dict[str, bool]) -> str:
    """``layer{s}.{b}.conv.{i}.*`` (mmpretrain) -> mmdet name; other keys are shared."""
    m = re.fullmatch(r'(layer\d+\.\d+)\.conv\.(\d+)\.(.+)', key)
    if m is None or m.group(1) not in blocks:
        return key
    prefix, i, rest = m.group(1), int(m.group(2)), m.group(3)
    convs = _BLOCK_CONVS[blocks[prefix]]
    return f'{prefix}.{convs[i]}.{rest}' if i < len(convs) else key


def convert_mobilenet_v2_keys(
        state_dict: Mapping[str, Tensor],
        arch: Sequence[Sequence[int]],
        num_kept_stages: int) -> tuple[dict[str, Tensor], list[str]]:
    """Convert a MobileNetV2 state dict to mmdet names and drop truncated layers.

    Args:
        state_dict: A torchvision, timm, mmdet or mmpretrain MobileNetV2 backbone's tensors
            (unwrapped by :func:`~rfcr.models.backbones.common.backbone_state_dict`).
        arch: The full MobileNetV2 arch table (all stages, before truncation).
        num_kept_stages: Stages kept; later stages and ``conv2`` are dropped.

    Returns:
        The converted state dict and the original names of the dropped keys (truncated
        layers and classifier).

    Raises:
        ValueError: for a timm checkpoint whose stages hold another number of blocks than
            MobileNetV2's (the depth-multiplied ``mobilenetv2_110d``, ``mobilenetv2_120d``).
    """
    blocks = _block_table(arch)
    dropped: list[str] = []
    converted: dict[str, tuple[str, Tensor]] = {}
    if any(k.startswith(('conv_stem.', 'blocks.')) for k in state_dict):
        depth = _timm_depth(state_dict, len(arch))
        expected = tuple(num_blocks for _, _, num_blocks, _ in arch)
        if depth != expected:
            raise ValueError(
                f'the timm checkpoint has {depth} blocks per stage, MobileNetV2 has {expected}: '
                'depth-multiplied variants (timm\'s mobilenetv2_110d, mobilenetv2_120d) are '
                'another network; use mobilenetv2_035 ... mobilenetv2_140')
        for key, value in state_dict.items():
            name = _from_timm(key, arch)
            if name is None:
                dropped.append(key)
            else:
                converted[name] = (key, value)
    elif any(k.startswith('features.') for k in state_dict):
        for key, value in state_dict.items():
            name = _from_torchvision(key, blocks)
            if name is None:
                dropped.append(key)
            else:
                converted[name] = (key, value)
    else:
        expand_of = dict(blocks)
        converted = {_from_mmpretrain(k, expand_of): (k, v) for k, v in state_dict.items()}

    kept_stages = {f'layer{s}.' for s in range(1, num_kept_stages + 1)}
    out: dict[str, Tensor] = {}
    for name, (original, value) in converted.items():
        removed = name.startswith('conv2.') or (
            name.startswith('layer') and not any(name.startswith(p) for p in kept_stages))
        if removed:
            dropped.append(original)
        else:
            out[name] = value
    return out, sorted(dropped)
