"""MobileNetV2 with YOLO-ReT's backbone truncation."""
from __future__ import annotations

import math
from typing import Sequence

from mmcv.cnn import ConvModule, build_conv_layer
from mmengine.model import BaseModule
from torch import Tensor, nn
from torch.nn.modules.batchnorm import _BatchNorm

from mmdet.models.layers import InvertedResidual
from mmdet.models.utils import make_divisible
from mmdet.registry import MODELS
from mmdet.utils import ConfigType, OptConfigType, OptMultiConfig

from ...utils.checkpoint import is_pretrained_init
from ..keras_compat import missing_checkpoint_error
from .common import check_out_strides, load_pretrained
from .mobilenet_v2_keys import convert_mobilenet_v2_keys

# The whole MobileNetV2 body, as in the paper (Sandler et al., Table 2) and torchvision.
# Columns: expand_ratio, out_channels (at width 1.0), num_blocks, stride of the first block.
# Row i builds stage `layer{i + 1}`. Truncation keeps the first 6 rows: stage 7 (the single
# 320-channel block) and the 1280-channel 1x1 conv after it are never constructed.
MOBILENET_V2_ARCH = (
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),  # removed by truncation
)
NUM_KEPT_STAGES = 6

# Output stride of the stem and of each kept stage (stem, layer1, ..., layer6).
_STAGE_STRIDES = (2, 2, 4, 8, 16, 16, 32)
PAD_TYPES = ('', 'same')


def _tf_same(conv: nn.Conv2d) -> nn.Conv2d:
    """``conv`` as mmcv's ``Conv2dAdaptivePadding``: TensorFlow's "SAME" padding."""
    return build_conv_layer(dict(type='Conv2dAdaptivePadding'), conv.in_channels,
                            conv.out_channels, conv.kernel_size, stride=conv.stride,
                            dilation=conv.dilation, groups=conv.groups, bias=conv.bias is not None)


@MODELS.register_module()
class TruncatedMobileNetV2(BaseModule):
    """MobileNetV2 without its last two blocks (YOLO-ReT, Ganesh et al., WACV 2022).

    The 320-channel inverted residual and the 1280-channel 1x1 conv carry little
    transferable information for detection (the paper's Fig. 2) but a large part of the
    cost; they are not built, so they hold no parameters and cost nothing. What remains
    is torchvision's ``mobilenet_v2().features[:17]``, laid out like mmdet's
    ``MobileNetV2`` (``conv1``, ``layer1`` ... ``layer6``).

    Each requested stride is tapped at the end of the last stage with that stride:
    stride 4 after ``layer2``, 8 after ``layer3``, 16 after ``layer5``, 32 after ``layer6``
    (stride 2 after ``layer1`` is available too). Channels at the default taps are
    32/96/160 at width 1.0, 24/72/120 at 0.75 and 48/136/224 at 1.4.

    Keras' ImageNet weights (the only ones at widths 0.75 and 1.4, converted by
    ``rfcr-convert keras-mobilenetv2``) compute Keras' features only with Keras'
    numerics, as timm's ``tf_*`` models do: ``pad_type='same'`` and
    ``norm_cfg=dict(type='BN', eps=1e-3)``. On even sizes TensorFlow's "SAME" pads a
    stride-2 3x3 conv by 0 rows/cols at the top/left and 1 at the bottom/right; PyTorch's
    symmetric padding 1 shifts every feature by one pixel against the weights.

    Args:
        widen_factor: Width multiplier; every stage's channels are scaled and rounded to
            a multiple of 8 as torchvision and mmdet do.
        out_strides: Strides of the returned feature maps, increasing. Add 4 for the
            paper's shallow shortcut into RFCR: ``(4, 8, 16, 32)``.
        frozen_stages: Stages whose parameters are frozen and whose norm layers stay in
            eval mode: -1 freezes nothing, 0 the stem, ``k`` the stem and ``layer1..k``.
        conv_cfg: Convolution config, as in mmcv's ``ConvModule``.
        norm_cfg: Normalization config. Keras' BN epsilon is 1e-3.
        act_cfg: Activation config (MobileNetV2 uses ReLU6).
        norm_eval: Keep all norm layers in eval mode (frozen running statistics) while
            training.
        with_cp: Use gradient checkpointing inside the inverted residual blocks.
        pad_type: Padding of the stride-2 convs (the stem and the four stride-2
            depthwise convs), as timm's ``pad_type``: ``''``, PyTorch's symmetric padding;
            ``'same'``, TensorFlow's "SAME" (mmcv's ``Conv2dAdaptivePadding``), which
            Keras weights need. Stride-1 convs pad symmetrically either way, which is
            "SAME" for odd kernels.
        init_cfg: Initialization config. ``dict(type='Pretrained', checkpoint=PATH_OR_URL)``
            accepts a torchvision ``mobilenet_v2``, timm ``mobilenetv2_*`` or mmdet /
            mmpretrain MobileNetV2 checkpoint, or Keras' converted by ``rfcr-convert``;
            see :meth:`init_weights`.

    Example:
        >>> import torch
        >>> from rfcr.models import TruncatedMobileNetV2
        >>> model = TruncatedMobileNetV2(widen_factor=0.75).eval()
        >>> outs = model(torch.rand(1, 3, 320, 320))
        >>> for stride, out in zip(model.strides, outs):
        ...     print(stride, tuple(out.shape))
        8 (1, 24, 40, 40)
        16 (1, 72, 20, 20)
        32 (1, 120, 10, 10)
    """

    def __init__(self,
                 widen_factor: float = 1.0,
                 out_strides: Sequence[int] = (8, 16, 32),
                 frozen_stages: int = -1,
                 conv_cfg: OptConfigType = None,
                 norm_cfg: ConfigType = dict(type='BN'),
                 act_cfg: ConfigType = dict(type='ReLU6'),
                 norm_eval: bool = False,
                 with_cp: bool = False,
                 pad_type: str = '',
                 init_cfg: OptMultiConfig = None) -> None:
        if init_cfg is None:
            init_cfg = [
                dict(type='Kaiming', layer='Conv2d'),
                dict(type='Constant', val=1, layer=['_BatchNorm', 'GroupNorm']),
            ]
        super().__init__(init_cfg)
        if (isinstance(widen_factor, bool) or not isinstance(widen_factor, (int, float))
                or not math.isfinite(widen_factor) or widen_factor <= 0):
            raise ValueError(
                f'widen_factor must be a positive number, got {widen_factor!r}')
        out_strides = check_out_strides(out_strides, _STAGE_STRIDES[1:])
        if (isinstance(frozen_stages, bool) or not isinstance(frozen_stages, int)
                or not -1 <= frozen_stages <= NUM_KEPT_STAGES):
            raise ValueError(
                f'frozen_stages must be an int in [-1, {NUM_KEPT_STAGES}] (-1: none, 0: stem, '
                f'k: stem and layer1..k), got {frozen_stages!r}')
        if pad_type not in PAD_TYPES:
            raise ValueError(f"pad_type must be '' (symmetric) or 'same' (TensorFlow), "
                             f'got {pad_type!r}')
        if pad_type == 'same' and conv_cfg is not None:
            raise ValueError("pad_type='same' builds mmcv's Conv2dAdaptivePadding for the "
                             f'stride-2 convs and needs conv_cfg=None, got {conv_cfg!r}')

        self.widen_factor = widen_factor
        self.pad_type = pad_type
        self.frozen_stages = frozen_stages
        self.norm_eval = norm_eval

        in_channels = make_divisible(32 * widen_factor, 8)
        stem_conv_cfg = dict(type='Conv2dAdaptivePadding') if pad_type == 'same' else conv_cfg
        self.conv1 = ConvModule(3, in_channels, 3, stride=2, padding=1, conv_cfg=stem_conv_cfg,
                                norm_cfg=norm_cfg, act_cfg=act_cfg)
        stage_channels = []
        for i, (expand_ratio, channels, num_blocks, stride) in enumerate(
                MOBILENET_V2_ARCH[:NUM_KEPT_STAGES]):
            out_channels = make_divisible(channels * widen_factor, 8)
            blocks = []
            for j in range(num_blocks):
                blocks.append(InvertedResidual(
                    in_channels, out_channels,
                    mid_channels=int(round(in_channels * expand_ratio)),
                    stride=stride if j == 0 else 1,
                    with_expand_conv=expand_ratio != 1,
                    conv_cfg=conv_cfg, norm_cfg=norm_cfg, act_cfg=act_cfg, with_cp=with_cp))
                if pad_type == 'same' and blocks[-1].depthwise_conv.conv.stride != (1, 1):
                    # mmdet's InvertedResidual takes one conv_cfg for its three convs: swap
                    # in the padding for the depthwise conv alone.
                    depthwise = blocks[-1].depthwise_conv
                    depthwise.conv = _tf_same(depthwise.conv)
                    depthwise.padding = depthwise.conv.padding
                in_channels = out_channels
            self.add_module(f'layer{i + 1}', nn.Sequential(*blocks))
            stage_channels.append(out_channels)

        # The tap for stride s is the last stage whose output stride is s.
        self.out_indices = tuple(
            max(i for i in range(1, NUM_KEPT_STAGES + 1) if _STAGE_STRIDES[i] == s)
            for s in out_strides)
        self.strides = out_strides
        self.out_channels = tuple(stage_channels[i - 1] for i in self.out_indices)
        self._freeze_stages()

    def forward(self, x: Tensor) -> tuple[Tensor, ...]:
        x = self.conv1(x)
        outs = []
        for i in range(1, self.out_indices[-1] + 1):
            x = getattr(self, f'layer{i}')(x)
            if i in self.out_indices:
                outs.append(x)
        return tuple(outs)

    def _freeze_stages(self) -> None:
        if self.frozen_stages < 0:
            return
        stages = [self.conv1] + [getattr(self, f'layer{i}')
                                 for i in range(1, self.frozen_stages + 1)]
        for stage in stages:
            stage.eval()
            for param in stage.parameters():
                param.requires_grad = False

    def train(self, mode: bool = True) -> 'TruncatedMobileNetV2':
        super().train(mode)
        self._freeze_stages()
        if mode and self.norm_eval:
            for m in self.modules():
                if isinstance(m, _BatchNorm):
                    m.eval()
        return self

    def init_weights(self) -> None:
        """Initialize from ``init_cfg``, loading pretrained weights strictly.

        With ``init_cfg=dict(type='Pretrained', checkpoint=...)`` the checkpoint (local
        path or http(s) URL) is read with ``torch.load(weights_only=True)`` and may be:

        - a torchvision ``mobilenet_v2`` state dict (``features.*``, ``classifier.*``);
        - a timm ``mobilenetv2_*`` state dict (``conv_stem``, ``blocks.*``, ``conv_head``,
          ``classifier``); the depth-multiplied ``*d`` variants are refused;
        - an mmdet ``MobileNetV2`` state dict (``conv1.*``, ``layerN.*``, ``conv2.*``), as
          ``rfcr-convert keras-mobilenetv2`` writes from Keras' weights;
        - an mmpretrain ``ImageClassifier`` checkpoint (``backbone.*``, ``head.*``),
          optionally wrapped in ``{'state_dict': ...}``;
        - any of these under ``init_cfg['prefix']`` (e.g. ``'backbone.'`` of a detector).

        Keys of the truncated layers (stage 7, the 1280-channel conv) and of the
        classifier are dropped and logged by name. Any other missing or unexpected key,
        or any shape mismatch (for example a checkpoint of another width), raises
        ``ValueError``; so does a Keras checkpoint in a backbone without Keras' numerics
        (``pad_type='same'``, BN eps 1e-3). A missing local file raises
        ``FileNotFoundError`` naming the ``rfcr-convert`` command that makes it.
        """
        if not is_pretrained_init(self.init_cfg):
            super().init_weights()
            return
        load_pretrained(
            self, lambda sd: convert_mobilenet_v2_keys(sd, MOBILENET_V2_ARCH, NUM_KEPT_STAGES),
            f'TruncatedMobileNetV2(widen_factor={self.widen_factor})',
            lambda checkpoint: missing_checkpoint_error(checkpoint, self.widen_factor))
        self._is_init = True
