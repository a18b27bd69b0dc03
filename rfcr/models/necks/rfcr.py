"""RFCR: Raw Feature Collection and Redistribution (YOLO-ReT, Ganesh et al., WACV 2022)."""
from __future__ import annotations

from typing import Optional, Sequence

import torch
import torch.nn.functional as F
from mmcv.cnn import ConvModule, build_conv_layer
from mmengine.model import BaseModule
from torch import Tensor, nn

from mmdet.registry import MODELS
from mmdet.utils import ConfigType, OptConfigType, OptMultiConfig

from ..layers.resize import max_pool_to, upsample_to

FUSION_NORMS = (None, 'softmax', 'fast')


def _check_positive_int(name: str, value) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f'{name} must be a positive int, got {value!r}')


@MODELS.register_module()
class RFCR(BaseModule):
    """Collect raw backbone features at stride 16, fuse them, redistribute to every scale.

    Exactly the official design (``rfcr_module`` in prakharg24/yoloret)::

        stride 4 (optional) --maxpool 4x4--> 1x1 conv --+
        stride 8   --------> 1x1 conv --maxpool 2x2-----+
        stride 16  --------> 1x1 conv ------------------+--> w . [c4, c8, c16, c32]
        stride 32  --------> 1x1 conv --nearest x2------+          (learned weighted sum)
                                                                      |
                        depthwise 5x5 - BN - ReLU6 - 1x1 - BN - ReLU6 | (separable conv)
                                                                      v
                                                                    fused (stride 16)
        out[0] = concat(stride 8,  nearest x2(fused))     in_channels[0] + fuse_channels
        out[1] = concat(stride 16, fused)                 in_channels[1] + fuse_channels
        out[2] = concat(stride 32, maxpool 2x2(fused))    in_channels[2] + fuse_channels
        (raw input first; ``out_indices`` selects which are returned, all by default)

    The 1x1 "collect" convs have no bias, norm or activation. Every resize targets the
    exact size of the other map, so odd input sizes (e.g. 321x321) work; inputs that are
    not a stride pyramid raise ``ValueError``.

    Args:
        in_channels: Channels of the stride 8, 16 and 32 inputs.
        collect_channels: Channels of the collected (1x1-projected) maps.
        fuse_channels: Channels of the fused map appended to every scale.
        shortcut_channels: Channels of an extra stride-4 input, passed first (the paper's
            shallow shortcut). ``None``: three inputs.
        out_indices: Which redistributed scales to return (0: stride 8, 1: 16, 2: 32);
            the others are not computed. E.g. ``(1, 2)`` feeds SSD's two-level neck.
        fusion_norm: How the fusion weights are used. ``None`` (the paper): plain
            weighted sum, weights initialized to 1. ``'softmax'``: softmax-normalized
            weights. ``'fast'``: BiFPN's fast normalized fusion, ``relu(w) / (sum + eps)``.
        conv_cfg: Convolution config of every conv.
        norm_cfg: Norm config of the separable fusion conv.
        act_cfg: Activation of the separable fusion conv (ReLU6 in the paper).
        init_cfg: Initialization config; convs default to Xavier-uniform (Keras'
            ``glorot_uniform``, used by the official code).

    Example:
        >>> import torch
        >>> from rfcr.models import RFCR
        >>> neck = RFCR(in_channels=(24, 72, 120)).eval()
        >>> feats = (torch.rand(1, 24, 41, 41), torch.rand(1, 72, 21, 21),
        ...          torch.rand(1, 120, 11, 11))
        >>> for out in neck(feats):
        ...     print(tuple(out.shape))
        (1, 120, 41, 41)
        (1, 168, 21, 21)
        (1, 216, 11, 11)
    """

    def __init__(self,
                 in_channels: Sequence[int],
                 collect_channels: int = 48,
                 fuse_channels: int = 96,
                 shortcut_channels: Optional[int] = None,
                 out_indices: Sequence[int] = (0, 1, 2),
                 fusion_norm: Optional[str] = None,
                 conv_cfg: OptConfigType = None,
                 norm_cfg: ConfigType = dict(type='BN'),
                 act_cfg: ConfigType = dict(type='ReLU6'),
                 init_cfg: OptMultiConfig = dict(
                     type='Xavier', layer='Conv2d', distribution='uniform')) -> None:
        super().__init__(init_cfg)
        in_channels = tuple(in_channels) if isinstance(in_channels, Sequence) else in_channels
        if not isinstance(in_channels, tuple) or len(in_channels) != 3:
            raise ValueError('in_channels must list the channels of the stride 8, 16 and 32 '
                             f'inputs (3 ints), got {in_channels!r}')
        for i, c in enumerate(in_channels):
            _check_positive_int(f'in_channels[{i}]', c)
        _check_positive_int('collect_channels', collect_channels)
        _check_positive_int('fuse_channels', fuse_channels)
        if shortcut_channels is not None:
            _check_positive_int('shortcut_channels', shortcut_channels)
        out_indices = tuple(out_indices)
        if not out_indices or list(out_indices) != sorted(set(out_indices)) or not set(
                out_indices) <= {0, 1, 2}:
            raise ValueError('out_indices must be a non-empty increasing subset of (0, 1, 2), '
                             f'got {out_indices!r}')
        if fusion_norm not in FUSION_NORMS:
            raise ValueError(f'fusion_norm must be one of {FUSION_NORMS}, got {fusion_norm!r}')

        self.in_channels = in_channels
        self.collect_channels = collect_channels
        self.fuse_channels = fuse_channels
        self.shortcut_channels = shortcut_channels
        self.fusion_norm = fusion_norm
        self.out_indices = out_indices
        self.out_channels = tuple(in_channels[i] + fuse_channels for i in out_indices)
        # Channels of every input, in input order (the stride-4 shortcut first).
        self.input_channels = ((shortcut_channels, ) if shortcut_channels else ()) + in_channels

        self.collect_convs = nn.ModuleList(
            build_conv_layer(conv_cfg, c, collect_channels, 1, bias=False)
            for c in self.input_channels)
        # One scalar per input, initialized to 1 (official WeightedSum).
        self.fusion_weights = nn.Parameter(torch.ones(len(self.input_channels)))
        self.fuse_conv = nn.Sequential(
            ConvModule(collect_channels, collect_channels, 5, padding=2, groups=collect_channels,
                       conv_cfg=conv_cfg, norm_cfg=norm_cfg, act_cfg=act_cfg),
            ConvModule(collect_channels, fuse_channels, 1, conv_cfg=conv_cfg, norm_cfg=norm_cfg,
                       act_cfg=act_cfg))

    # The exact-size resizes of redistribute() (rfcr.deploy.DeployRFCR shares redistribute()).
    _upsample_to = staticmethod(upsample_to)
    _max_pool_to = staticmethod(max_pool_to)

    @property
    def num_inputs(self) -> int:
        return len(self.input_channels)

    def normalized_fusion_weights(self) -> Tensor:
        """The weights actually multiplied with the collected maps."""
        w = self.fusion_weights
        if self.fusion_norm == 'softmax':
            return w.softmax(0)
        if self.fusion_norm == 'fast':
            w = F.relu(w)
            return w / (w.sum() + 1e-4)
        return w

    def _check_inputs(self, inputs: Sequence[Tensor]) -> None:
        if not isinstance(inputs, (tuple, list)) or len(inputs) != self.num_inputs:
            got = len(inputs) if isinstance(inputs, (tuple, list)) else type(inputs).__name__
            order = ('stride 4, ' if self.shortcut_channels else '') + 'stride 8, 16, 32'
            raise ValueError(f'RFCR expects {self.num_inputs} inputs ({order}), got {got}')
        names = (['shortcut_channels'] if self.shortcut_channels else []) + [
            f'in_channels[{i}]' for i in range(3)]
        for i, (x, c, name) in enumerate(zip(inputs, self.input_channels, names)):
            if x.dim() != 4 or x.shape[1] != c:
                raise ValueError(f'RFCR input {i} has shape {tuple(x.shape)}, but {name}={c} '
                                 f'expects (N, {c}, H, W)')

    def forward(self, inputs: Sequence[Tensor]) -> tuple[Tensor, ...]:
        self._check_inputs(inputs)
        return self.redistribute(inputs, self.fuse(inputs))

    def fuse(self, inputs: Sequence[Tensor]) -> Tensor:
        """The fused stride-16 map, ``(N, fuse_channels, H16, W16)``: collect, weighted
        sum, separable conv. ``inputs`` as for ``forward`` (not checked here)."""
        x8, x16, x32 = inputs[-3:]
        size16 = x16.shape[-2:]
        convs = iter(self.collect_convs)
        collected = []
        if self.shortcut_channels:
            # Pool first: the 1x1 conv then runs on 16x fewer pixels.
            collected.append(next(convs)(max_pool_to(inputs[0], size16, 4, 'shortcut input')))
        collected.append(max_pool_to(next(convs)(x8), size16, 2, 'stride-8 input'))
        collected.append(next(convs)(x16))
        collected.append(upsample_to(next(convs)(x32), size16, 2, 'stride-32 input'))

        weights = self.normalized_fusion_weights()
        fused = weights[0] * collected[0]
        for w, c in zip(weights[1:], collected[1:]):
            fused = fused + w * c
        return self.fuse_conv(fused)

    def redistribute(self, inputs: Sequence[Tensor], fused: Tensor,
                     indices: Optional[Sequence[int]] = None) -> tuple[Tensor, ...]:
        """Each raw input at strides 8, 16, 32 concatenated with ``fused`` resized to it,
        for the scales in ``indices`` (default: ``out_indices``; 0: stride 8)."""
        x8, x16, x32 = inputs[-3:]
        indices = self.out_indices if indices is None else indices
        outs = []
        if 0 in indices:
            outs.append(torch.cat([x8, self._upsample_to(fused, x8.shape[-2:], 2, 'fused map')],
                                  1))
        if 1 in indices:
            outs.append(torch.cat([x16, fused], 1))
        if 2 in indices:
            outs.append(torch.cat([x32, self._max_pool_to(fused, x32.shape[-2:], 2, 'fused map')],
                                  1))
        return tuple(outs)
