"""YOLO-ReT's aggregation path: FPN top-down, then PAN bottom-up, with MBConv nodes."""
from __future__ import annotations

from typing import Sequence

import torch
from mmcv.cnn import ConvModule
from mmengine.model import BaseModule
from torch import Tensor, nn

from mmdet.models.layers import InvertedResidual
from mmdet.registry import MODELS
from mmdet.utils import ConfigType, OptConfigType, OptMultiConfig

from ..layers.resize import max_pool_to, upsample_to


class MBConvNode(nn.Sequential):
    """1x1 conv - BN - ReLU6, then an MBConv block (the official
    ``make_last_layers_efficientnet_lite`` without its prediction conv).

    The MBConv block: 3x3 depthwise - BN - Swish, squeeze-excite (ratio ``se_ratio`` of
    the node width, Swish / sigmoid), 1x1 projection to ``out_channels`` - BN, no
    activation. Its expand ratio is 1, so it has no expansion conv.
    """

    def __init__(self, in_channels: int, width: int, out_channels: int, se_ratio: float,
                 conv_cfg: OptConfigType, norm_cfg: ConfigType, act_cfg: ConfigType,
                 mbconv_act_cfg: ConfigType) -> None:
        super().__init__(
            ConvModule(in_channels, width, 1, conv_cfg=conv_cfg, norm_cfg=norm_cfg,
                       act_cfg=act_cfg),
            InvertedResidual(
                width, out_channels, mid_channels=width, kernel_size=3, with_expand_conv=False,
                se_cfg=dict(channels=width, ratio=1 / se_ratio,
                            act_cfg=(mbconv_act_cfg, dict(type='Sigmoid'))),
                conv_cfg=conv_cfg, norm_cfg=norm_cfg, act_cfg=mbconv_act_cfg))


@MODELS.register_module()
class YOLOReTNeck(BaseModule):
    """The official YOLO-ReT aggregation path (``yolov3_body`` in prakharg24/yoloret).

    Inputs are RFCR's outputs, strides 8, 16, 32. Every node is a :class:`MBConvNode`
    whose width is ``widths[i]`` (128 / 256 / 512 at stride 8 / 16 / 32)::

        s32 -> node ------------------------------------------------> c32 ----------+
                 `-> 1x1 conv 256 - BN - ReLU6 -> up x2 -+                           |
        s16 ---------------------------------------- cat -> node ---> c16 -------+  |
                 ,-----------------------------------------------------'          |  |
                 `-> 1x1 conv 128 - BN - ReLU6 -> up x2 -+                         |  |
        s8  ---------------------------------------- cat -> node ---> c8          |  |
                                                                       |          |  |
        out s8  <------------------------------------------ node <-----'          |  |
                 `-> 1x1 conv 128 - BN - ReLU6 -> maxpool 2x2 -> cat(., c16) -> node -> out s16
                       `-> 1x1 conv 256 - BN - ReLU6 -> maxpool 2x2 -> cat(., c32) -> node -> out s32

    Every node projects to ``out_channels`` (officially the prediction size,
    ``num_anchors * (num_classes + 5)``); the head's 1x1 prediction convs follow.

    Args:
        in_channels: Channels of the stride 8, 16, 32 inputs (RFCR's ``out_channels``).
        out_channels: Channels every node projects to.
        widths: Node widths at strides 8, 16, 32.
        se_ratio: Squeeze-excite reduction, as a fraction of the node width.
        conv_cfg: Convolution config.
        norm_cfg: Norm config.
        act_cfg: Activation of the 1x1 convs (ReLU6).
        mbconv_act_cfg: Activation inside the MBConv blocks (Swish, i.e. SiLU).
        init_cfg: Initialization config. By default every conv (all are mmcv
            ``ConvModule``) gets ``ConvModule``'s Kaiming-normal fan-out init, which is
            EfficientNet's ``conv_kernel_initializer``.

    Returns:
        Features at strides 32, 16, 8 (the order of mmdet's YOLOv3 heads).

    Example:
        >>> import torch
        >>> from rfcr.models import YOLOReTNeck
        >>> neck = YOLOReTNeck(in_channels=(120, 168, 216), out_channels=255).eval()
        >>> feats = (torch.rand(1, 120, 40, 40), torch.rand(1, 168, 20, 20),
        ...          torch.rand(1, 216, 10, 10))
        >>> for out in neck(feats):
        ...     print(tuple(out.shape))
        (1, 255, 10, 10)
        (1, 255, 20, 20)
        (1, 255, 40, 40)
    """

    def __init__(self,
                 in_channels: Sequence[int],
                 out_channels: int,
                 widths: Sequence[int] = (128, 256, 512),
                 se_ratio: float = 0.25,
                 conv_cfg: OptConfigType = None,
                 norm_cfg: ConfigType = dict(type='BN'),
                 act_cfg: ConfigType = dict(type='ReLU6'),
                 mbconv_act_cfg: ConfigType = dict(type='SiLU'),
                 init_cfg: OptMultiConfig = None) -> None:
        super().__init__(init_cfg)
        in_channels = tuple(in_channels)
        widths = tuple(widths)
        for name, values in (('in_channels', in_channels), ('widths', widths)):
            if len(values) != 3 or any(
                    isinstance(v, bool) or not isinstance(v, int) or v <= 0 for v in values):
                raise ValueError(f'{name} must be 3 positive ints (strides 8, 16, 32), '
                                 f'got {values!r}')
        if isinstance(out_channels, bool) or not isinstance(out_channels, int) or out_channels <= 0:
            raise ValueError(f'out_channels must be a positive int, got {out_channels!r}')
        if not 0 < se_ratio <= 1:
            raise ValueError(f'se_ratio must be in (0, 1], got {se_ratio!r}')
        self.in_channels = in_channels
        self.out_channels = (out_channels, ) * 3
        self.widths = widths

        def node(c_in: int, width: int) -> MBConvNode:
            return MBConvNode(c_in, width, out_channels, se_ratio, conv_cfg, norm_cfg, act_cfg,
                              mbconv_act_cfg)

        def conv1x1(c_in: int, c_out: int) -> ConvModule:
            return ConvModule(c_in, c_out, 1, conv_cfg=conv_cfg, norm_cfg=norm_cfg,
                              act_cfg=act_cfg)

        # Index i is the level: 0 = stride 8, 1 = stride 16, 2 = stride 32.
        # Top-down: node at stride 32 on its input; below, node(cat(up(reduce(above)), input)).
        self.top_down_reduce = nn.ModuleList(
            conv1x1(out_channels, widths[i]) for i in range(2))
        self.top_down_nodes = nn.ModuleList(
            node(in_channels[i] + (widths[i] if i < 2 else 0), widths[i]) for i in range(3))
        # Bottom-up: node at stride 8 on c8; above, node(cat(pool(reduce(below)), c_above)).
        self.bottom_up_reduce = nn.ModuleList(
            conv1x1(out_channels, widths[i]) for i in range(2))
        self.bottom_up_nodes = nn.ModuleList(
            node(out_channels + (widths[i - 1] if i > 0 else 0), widths[i]) for i in range(3))

    def forward(self, inputs: Sequence[Tensor]) -> tuple[Tensor, ...]:
        if len(inputs) != 3:
            raise ValueError(f'YOLOReTNeck expects 3 inputs (strides 8, 16, 32), '
                             f'got {len(inputs)}')
        for i, (x, c) in enumerate(zip(inputs, self.in_channels)):
            if x.shape[1] != c:
                raise ValueError(f'YOLOReTNeck input {i} has {x.shape[1]} channels, but '
                                 f'in_channels[{i}]={c}')
        # Top-down (FPN).
        c = [None, None, self.top_down_nodes[2](inputs[2])]
        for i in (1, 0):
            up = upsample_to(self.top_down_reduce[i](c[i + 1]), inputs[i].shape[-2:])
            c[i] = self.top_down_nodes[i](torch.cat([up, inputs[i]], 1))
        # Bottom-up (PAN).
        outs = [self.bottom_up_nodes[0](c[0])]
        for i in (1, 2):
            down = max_pool_to(self.bottom_up_reduce[i - 1](outs[-1]), c[i].shape[-2:])
            outs.append(self.bottom_up_nodes[i](torch.cat([down, c[i]], 1)))
        return tuple(outs[::-1])
