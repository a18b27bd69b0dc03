"""YOLO-ReT's aggregation path at inference, with its linear maps composed.

Every :class:`~rfcr.models.necks.yoloret_neck.MBConvNode` ends with a 1x1 projection
(BN folded in, no activation) to the prediction width ``O`` (255 on COCO), and everything
that reads a node's output is a 1x1 conv: the next node's first conv (alone, or on a
concat: a 1x1 conv of a concat is the sum of 1x1 convs of the parts), the reduce convs
and the head's prediction convs. Two linear maps in a row are one: a consumer ``W`` (K x O)
of a projection ``P`` (O x w) of the node's hidden state ``h`` (w channels) computes
``W (P h + b) = (W P) h + W b``. Composing skips the O-channel map entirely and reads the
narrower hidden state instead::

    materialized:  h --P (w->O)--> out --W1 (O->K1)-->        cost  w*O + O*(K1+K2)
                                       `--W2 (O->K2)-->
    composed:      h --W1 P (w->K1)-->                        cost  w*(K1+K2)
                    `--W2 P (w->K2)-->

per pixel. A node's consumers are composed when that costs fewer multiply-adds, which
on COCO (O = 255, widths 128/256/512) is every node but the top-down stride-32 one
(w = 512 > O), and on VOC (O = 75) only the narrowest: the choice is made per node from
the widths, so any configuration gets the cheaper side. A node whose block adds a
residual, or whose consumers are not plain 1x1 convs, is left materialized.

Given the head's prediction convs (:func:`fold_yoloret_detector`), the bottom-up nodes
compose into them too and the neck returns the prediction maps themselves: on COCO at
320x320 this removes 0.26 of the detector's 1.06 GMACs.
"""
from __future__ import annotations

import copy
from typing import Optional, Sequence

import torch
from torch import Tensor, nn

from ..models.dense_heads import YOLOReTHead
from ..models.layers import max_pool_to, upsample_to
from ..models.necks import RFCR, YOLOReTNeck
from ..models.necks.yoloret_neck import MBConvNode
from .bricks import DeployInvertedResidual
from .conv import ConvAct, fold_conv_module
from .rfcr import DeployRFCR

__all__ = ['DeployYOLOReTNeck', 'fold_yoloret_detector']


class _Node(nn.Module):
    """A folded MBConv node up to its hidden state: first 1x1 conv, depthwise conv,
    squeeze-excite. Its projection runs apart (:meth:`output`), or not at all where its
    consumers are composed with it. A node whose block adds a residual returns its output
    directly."""

    def __init__(self, node: MBConvNode) -> None:
        super().__init__()
        first, block = copy.deepcopy(node)
        self.first = fold_conv_module(first)
        block = DeployInvertedResidual(block)
        if not isinstance(self.first, ConvAct) or not isinstance(block.linear_conv, ConvAct):
            raise TypeError('a node whose 1x1 convs do not fold cannot be composed')
        self.layers = block.layers  # depthwise conv, squeeze-excite
        self.projection = block.linear_conv
        self.residual = block.with_res_shortcut

    def forward(self, x: Tensor, other: Optional[Tensor] = None) -> Tensor:
        u = self.first(x, other)
        hidden = self.layers(u)
        return self.projection(hidden, u) if self.residual else hidden

    def output(self, hidden: Tensor) -> Tensor:
        """The node's output from what :meth:`forward` returned."""
        return hidden if self.residual else self.projection(hidden)

    def composable(self) -> bool:
        p = self.projection
        return not self.residual and _is_plain_1x1(p) and p.act is None


def _is_plain_1x1(module: nn.Module) -> bool:
    """A 1x1, stride-1, ungrouped conv with nothing before it: composable as a matrix."""
    if isinstance(module, ConvAct):
        if module.padding is not None:
            return False
        module = module.conv
    return (type(module) is nn.Conv2d and module.kernel_size == (1, 1)
            and module.stride == (1, 1) and module.groups == 1
            and module.dilation == (1, 1) and module.padding in ((0, 0), 'valid'))


def _matrix(conv: nn.Conv2d) -> tuple[Tensor, Tensor]:
    """Weight (out x in) and bias (zeros if none) of a 1x1 conv, in float64."""
    w = conv.weight.detach().double().flatten(1)
    b = (conv.bias.detach().double() if conv.bias is not None
         else torch.zeros(conv.out_channels, dtype=torch.float64))
    return w, b


def _conv(weight: Tensor, bias: Optional[Tensor], act: Optional[nn.Module],
          dtype: torch.dtype) -> ConvAct:
    """A 1x1 :class:`ConvAct` of ``weight`` (out x in) and ``bias``."""
    conv = nn.Conv2d(weight.shape[1], weight.shape[0], 1, bias=bias is not None)
    with torch.no_grad():
        conv.weight.copy_(weight.to(dtype)[:, :, None, None])
        if bias is not None:
            conv.bias.copy_(bias.to(dtype))
    return ConvAct(conv.requires_grad_(False), copy.deepcopy(act))


def _compose(consumer: nn.Module, parts: Sequence[tuple[int, Optional[nn.Module]]]
             ) -> ConvAct:
    """``consumer`` (a 1x1 conv, maybe with activation) reading a concat of ``parts``,
    each ``(channels, projection)``: a part whose projection is given is read through it,
    and the composed conv takes the projection's input there instead.

    Computed in float64; the result has the consumer's activation.
    """
    conv = consumer.conv if isinstance(consumer, ConvAct) else consumer
    act = consumer.act if isinstance(consumer, ConvAct) else None
    w, b = _matrix(conv)
    if sum(c for c, _ in parts) != w.shape[1]:
        raise ValueError(f'parts of {[c for c, _ in parts]} channels do not add up to the '
                         f'{w.shape[1]} input channels of {conv!r}')
    columns, start = [], 0
    for channels, projection in parts:
        block = w[:, start:start + channels]
        start += channels
        if projection is None:
            columns.append(block)
            continue
        p, pb = _matrix(projection.conv)
        columns.append(block @ p)
        b = b + block @ pb
    return _conv(torch.cat(columns, 1), b, act, conv.weight.dtype)


def _compose_all(hidden: int, out: int, consumer_widths: Sequence[int],
                 output_needed: bool) -> bool:
    """Whether consumers should read the hidden state (composed) rather than the output.

    Without the output needed elsewhere: when ``hidden * sum(K)`` multiply-adds per pixel
    beat ``hidden * out + out * sum(K)``. With it (computed anyway): when ``hidden < out``.
    """
    total = sum(consumer_widths)
    if output_needed:
        return hidden < out
    return hidden * total < hidden * out + out * total


class DeployYOLOReTNeck(nn.Module):
    """:class:`~rfcr.models.YOLOReTNeck` folded (BN into convs, lean squeeze-excite) and
    with each node's projection composed into the 1x1 convs that read it wherever that
    saves work (see :mod:`rfcr.deploy.compose`).

    Args:
        neck: The trained neck, in eval mode. It is read, not modified.
        pred_convs: The head's 1x1 prediction convs at strides 32, 16, 8 (mmdet's YOLOv3
            order), composed into the bottom-up nodes: the module then returns the
            prediction maps. ``None``: it returns the neck's outputs.

    Returns (forward):
        Maps at strides 32, 16, 8: the neck's outputs, or the head's predictions.

    Example:
        >>> import torch
        >>> from rfcr.models import YOLOReTNeck
        >>> from rfcr.deploy import DeployYOLOReTNeck
        >>> neck = YOLOReTNeck(in_channels=(120, 168, 216), out_channels=255).eval()
        >>> folded = DeployYOLOReTNeck(neck)
        >>> folded.compose_top_down, folded.compose_bottom_up  # outputs needed: w < 255 only
        ((True, True, False), (True, False, False))
        >>> feats = (torch.rand(1, 120, 40, 40), torch.rand(1, 168, 20, 20),
        ...          torch.rand(1, 216, 10, 10))
        >>> with torch.no_grad():
        ...     print(max(float((a - b).abs().max()) for a, b in zip(neck(feats),
        ...                                                           folded(feats))) < 1e-4)
        True
    """

    def __init__(self, neck: YOLOReTNeck, pred_convs: Optional[Sequence[nn.Conv2d]] = None,
                 rfcr: Optional[nn.Module] = None) -> None:
        super().__init__()
        if pred_convs is not None:
            pred_convs = list(pred_convs)[::-1]  # level order: stride 8, 16, 32
            if len(pred_convs) != 3 or not all(_is_plain_1x1(c) for c in pred_convs):
                raise ValueError('pred_convs must be three 1x1 convs (strides 32, 16, 8), '
                                 f'got {pred_convs!r}')
        if rfcr is not None:
            rfcr = rfcr if isinstance(rfcr, DeployRFCR) else DeployRFCR(rfcr)
            if not (isinstance(rfcr, DeployRFCR) and tuple(rfcr.out_indices) == (0, 1, 2)
                    and tuple(rfcr.out_channels) == tuple(neck.in_channels)):
                raise ValueError('rfcr must be an RFCR returning the three maps the neck '
                                 f'takes ({neck.in_channels} channels), got {rfcr!r}')
        self.rfcr = rfcr
        self.in_channels = rfcr.input_channels if rfcr is not None else neck.in_channels
        self.widths = neck.widths
        self.out_channels = (tuple(c.out_channels for c in pred_convs[::-1]) if pred_convs
                             else neck.out_channels)
        out = neck.out_channels[0]
        widths = list(self.widths)

        td = [_Node(n) for n in neck.top_down_nodes]
        bu = [_Node(n) for n in neck.bottom_up_nodes]
        td_reduce = [fold_conv_module(m) for m in neck.top_down_reduce]
        bu_reduce = [fold_conv_module(m) for m in neck.bottom_up_reduce]
        if not all(isinstance(m, ConvAct) for m in td_reduce + bu_reduce):
            raise TypeError('reduce convs that do not fold cannot be composed')

        # Top-down nodes 0 and 1 read cat([up(r), x]): their first conv is W_r up(r) + W_x x
        # = up(W_r r) + W_x x, W_r running at the coarser level (4x fewer pixels), added
        # to W_x x by its ConvAct. With RFCR, x at stride 8 is cat([raw, up(fused)]),
        # so fused joins r there: up(W_r r + W_f fused) + W_raw raw.
        self.top_down_lateral = nn.ModuleList()
        for i in (0, 1):
            first = td[i].first
            w, b = _matrix(first.conv)
            raw = rfcr.in_channels[0] if rfcr is not None and i == 0 else w.shape[1] - widths[i]
            lateral = torch.cat([w[:, :widths[i]], w[:, widths[i] + raw:]], 1)
            self.top_down_lateral.append(_conv(lateral, None, None, first.conv.weight.dtype))
            td[i].first = _conv(w[:, widths[i]:widths[i] + raw], b, first.act,
                                first.conv.weight.dtype)

        def decide(node: _Node, consumers: list, widths_k: list, needed: bool) -> bool:
            return (node.composable() and all(_is_plain_1x1(c) for c in consumers)
                    and _compose_all(node.projection.conv.in_channels, out, widths_k, needed))

        # Consumers of top-down node i: top_down_reduce[i - 1] (i > 0) and bottom-up node
        # i's first conv (alone at i = 0, else the second part of cat([down, c_i])).
        self.compose_top_down = tuple(
            decide(td[i], ([td_reduce[i - 1]] if i else []) + [bu[i].first],
                   ([widths[i - 1]] if i else []) + [widths[i]], False) for i in range(3))
        # Consumers of bottom-up node i: the prediction conv, bottom_up_reduce[i] (i < 2).
        self.compose_bottom_up = tuple(
            decide(bu[i], ([pred_convs[i]] if pred_convs else []) + bu_reduce[i:i + 1],
                   ([pred_convs[i].out_channels] if pred_convs else [])
                   + [m.conv.out_channels for m in bu_reduce[i:i + 1]],
                   pred_convs is None) for i in range(3))

        for i in range(3):
            if self.compose_top_down[i]:
                proj = td[i].projection
                if i:
                    td_reduce[i - 1] = _compose(td_reduce[i - 1], [(out, proj)])
                    bu[i].first = _compose(bu[i].first, [(widths[i - 1], None), (out, proj)])
                else:
                    bu[i].first = _compose(bu[i].first, [(out, proj)])
            if self.compose_bottom_up[i]:
                proj = bu[i].projection
                if pred_convs:
                    pred_convs[i] = _compose(pred_convs[i], [(out, proj)])
                if i < 2:
                    bu_reduce[i] = _compose(bu_reduce[i], [(out, proj)])
            elif pred_convs:
                pred_convs[i] = ConvAct(copy.deepcopy(pred_convs[i]).requires_grad_(False))
        # Projections run only where their output is read as such.
        for nodes, composed, needed in ((td, self.compose_top_down, False),
                                        (bu, self.compose_bottom_up, pred_convs is None)):
            for node, c in zip(nodes, composed):
                if c and not needed:
                    node.projection = None

        self.top_down_nodes = nn.ModuleList(td)
        self.bottom_up_nodes = nn.ModuleList(bu)
        self.top_down_reduce = nn.ModuleList(td_reduce)
        self.bottom_up_reduce = nn.ModuleList(bu_reduce)
        self.pred_convs = nn.ModuleList(pred_convs) if pred_convs else None

    def forward(self, inputs: Sequence[Tensor]) -> tuple[Tensor, ...]:
        if len(inputs) != len(self.in_channels):
            raise ValueError(f'DeployYOLOReTNeck expects {len(self.in_channels)} inputs, '
                             f'got {len(inputs)}')
        td, bu = self.top_down_nodes, self.bottom_up_nodes
        fused = None
        if self.rfcr is not None:
            fused = self.rfcr.fuse(inputs)  # (N, fuse_channels, H16, W16)
            inputs = (inputs[-3], ) + self.rfcr.redistribute(inputs, fused, (1, 2))

        def read(node: _Node, hidden: Tensor, composed: bool) -> Tensor:
            # What consumers take: the hidden state (composed into them) or the output.
            return hidden if composed else node.output(hidden)

        # Top-down (FPN).
        c = [None, None, read(td[2], td[2](inputs[2]), self.compose_top_down[2])]
        for i in (1, 0):
            r = self.top_down_reduce[i](c[i + 1])
            if i == 0 and fused is not None:
                r = torch.cat([r, fused], 1)
            up = upsample_to(self.top_down_lateral[i](r), inputs[i].shape[-2:])
            c[i] = read(td[i], td[i](inputs[i], up), self.compose_top_down[i])
        # Bottom-up (PAN).
        hidden = [bu[0](c[0])]
        for i in (1, 2):
            src = read(bu[i - 1], hidden[-1], self.compose_bottom_up[i - 1])
            down = max_pool_to(self.bottom_up_reduce[i - 1](src), c[i].shape[-2:])
            hidden.append(bu[i](torch.cat([down, c[i]], 1)))
        if self.pred_convs is not None:
            outs = [p(read(n, h, composed)) for p, n, h, composed in zip(
                self.pred_convs, bu, hidden, self.compose_bottom_up)]
        else:
            outs = [n.output(h) for n, h in zip(bu, hidden)]
        return tuple(outs[::-1])


def fold_yoloret_detector(detector: nn.Module) -> bool:
    """Compose a YOLO-ReT detector's prediction convs (and its RFCR) into its neck, in place.

    For a detector whose neck is a :class:`~rfcr.models.YOLOReTNeck`, alone or after an
    :class:`~rfcr.models.RFCR` in a list neck, and whose head is a
    :class:`~rfcr.models.YOLOReTHead`: the neck becomes one :class:`DeployYOLOReTNeck`
    returning the prediction maps, the head's prediction convs become identities (its
    ``in_channels`` the prediction width), so ``forward``, ``predict`` and ONNX export run
    as before. Returns whether it applied.
    """
    neck, head = getattr(detector, 'neck', None), getattr(detector, 'bbox_head', None)
    if type(head) is not YOLOReTHead or not all(_is_plain_1x1(c) for c in head.convs_pred):
        return False
    necks = list(neck) if isinstance(neck, nn.Sequential) else [neck]
    if not necks or type(necks[-1]) is not YOLOReTNeck:
        return False
    rfcr = None
    if (len(necks) >= 2 and type(necks[-2]) in (RFCR, DeployRFCR)
            and tuple(necks[-2].out_indices) == (0, 1, 2)):
        rfcr = necks.pop(-2)
    folded = DeployYOLOReTNeck(necks.pop(), head.convs_pred, rfcr).eval()
    detector.neck = nn.Sequential(*necks, folded) if necks else folded
    head.convs_pred = nn.ModuleList(nn.Identity() for _ in head.convs_pred)
    head.in_channels = list(folded.out_channels)
    return True
