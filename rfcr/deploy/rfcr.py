"""RFCR at inference: its fusion scalars folded into its collect convs."""
from __future__ import annotations

import copy
from typing import Sequence

import torch
from torch import Tensor, nn

from ..models.layers import max_pool_to, upsample_to
from ..models.necks import RFCR
from .conv import ConvAct, fold_conv_module, plain_conv


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
        plain = [plain_conv(conv) for conv in rfcr.collect_convs]
        for i, (conv, p) in enumerate(zip(rfcr.collect_convs, plain)):
            if p is None or p[1] is not None:  # e.g. ConvWS: w * weight is not w * conv
                raise TypeError(f'collect_convs[{i}] is a {type(conv).__name__}, not a plain '
                                'nn.Conv2d: its fusion weight cannot be folded into it')
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
        for (conv, _), scale in zip(plain, scales):
            folded = conv.requires_grad_(False)
            with torch.no_grad():
                folded.weight.copy_((conv.weight.double() * scale).to(conv.weight.dtype))
                if folded.bias is not None:
                    folded.bias.copy_((conv.bias.double() * scale).to(conv.bias.dtype))
            convs.append(ConvAct(folded))
        self.collect_convs = nn.ModuleList(convs)
        self.fuse_conv = nn.Sequential(*(fold_conv_module(copy.deepcopy(m))
                                         for m in rfcr.fuse_conv))

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
        fused = conv16(x16, fused)  # conv16(x16) + fused
        pooled = max_pool_to(conv8(x8), size16, 2, 'stride-8 input')
        fused = fused - pooled if self.subtract_stride8 else fused + pooled
        return self.fuse_conv(fused)  # (N, fuse_channels, H16, W16)

    # The same concatenations as RFCR's, reading out_indices, with the same resizes.
    redistribute = RFCR.redistribute
    _upsample_to = staticmethod(upsample_to)
    _max_pool_to = staticmethod(max_pool_to)
