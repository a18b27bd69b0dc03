"""EfficientNet with YOLO-ReT's backbone truncation."""
from __future__ import annotations

import re
from typing import Sequence

from torch import Tensor
from torch.nn.modules.batchnorm import _BatchNorm

from mmdet.models.backbones import EfficientNet
from mmdet.registry import MODELS
from mmdet.utils import ConfigType, OptConfigType, OptMultiConfig

from ...utils.checkpoint import is_pretrained_init
from .common import check_out_strides, load_pretrained

# Output stride of each module of mmdet's EfficientNet ('b' archs), ``layers[i]``: the stem,
# then the stages as mmdet groups them. mmdet merges every stride-1 stage into the stage
# before it, so ``layers[4]`` holds the paper's stages 4 (80 channels at width 1.0) and
# 5 (112), and ``layers[5]`` stages 6 (192) and 7 (320); ``layers[6]`` is the 1x1 conv to
# 1280 * width channels. Truncation removes stage 7 (the tail of ``layers[5]``) and
# ``layers[6]``.
_LAYER_STRIDES = (2, 2, 4, 8, 16, 32)
# mmpretrain's ImageNet EfficientNet-B3 (converted from TensorFlow's AutoAugment weights;
# Keras numerics: TensorFlow "SAME" padding, BN eps 1e-3), the weights mmdet's EfficientNet
# configs start from. ``wget URL -P checkpoints/`` puts it where configs/ expect it.
MMPRETRAIN_EFFICIENTNET_B3 = (
    'https://download.openmmlab.com/mmclassification/v0/efficientnet/'
    'efficientnet-b3_3rdparty_8xb32-aa_in1k_20220119-5b4887a0.pth')


@MODELS.register_module()
class TruncatedEfficientNet(EfficientNet):
    """mmdet's ``EfficientNet`` without its last stage and final 1x1 conv (YOLO-ReT, Ganesh et
    al., WACV 2022: the COCO models use EfficientNet-B3).

    The last stage (2 blocks of 384 channels at B3) and the 1x1 conv to 1536 channels are
    not built: they hold no parameters and cost nothing. Everything else is mmdet's
    ``EfficientNet`` as it is (``layers[0]`` the stem, ``layers[1..5]`` the stages, mmdet's
    key layout), which at B3 is Keras' EfficientNetB3 as the authors build it
    (prakharg24/yoloret ``code/yolo3/efficientnet.py``): width 1.2 and depth 1.4 with
    channels rounded to multiples of 8 (40 in the stem, then 24, 32, 48, 96, 136, 232 per
    stage, with 2, 3, 3, 5, 5, 6 blocks), kernel sizes 3/3/5/3/5/5, squeeze-excite of a
    quarter of the block's input channels, Swish, stochastic depth only on blocks with a
    skip. mmdet groups stride-1 stages with the stage before them, so ``layers[4]`` holds
    stages 4 and 5 and ``layers[5]`` stage 6.

    Each requested stride is tapped at the end of the last module with that stride: stride
    4 after ``layers[2]``, 8 after ``layers[3]``, 16 after ``layers[4]``, 32 after
    ``layers[5]`` (2 after ``layers[1]`` too). These are the official YOLO-ReT taps: the
    authors' ``yolov3_body`` for ``efficientnetb3`` taps the Keras layers ``add_2`` (the
    last skip of stage 2: stride 4, 32 channels), ``add_4`` (stage 3: stride 8, 48),
    ``add_12`` (stage 5: stride 16, 136) and ``add_17`` (stage 6: stride 32, 232), and never
    reaches ``add_18`` (stage 7) or the 1536-channel conv. Channels at the default taps are
    48/136/232 at B3.

    Keras numerics are mmdet's defaults: every conv is mmcv's ``Conv2dAdaptivePadding``
    (TensorFlow "SAME"; the same as symmetric padding for stride-1 convs) and BN eps is
    1e-3. ``conv_cfg=None`` gives PyTorch's symmetric padding instead.

    Args:
        arch: One of mmdet's EfficientNet-B archs, ``'b0'`` ... ``'b8'``. The EdgeTPU archs
            (``'es'``, ``'em'``, ``'el'``) have no separate last stage to truncate.
        out_strides: Strides of the returned feature maps, increasing, from 2, 4, 8, 16, 32.
            ``(4, 8, 16, 32)`` for the paper's shallow shortcut into RFCR. Modules after the
            last tap are not built, as in mmdet.
        frozen_stages: As mmdet's ``EfficientNet``: the first ``frozen_stages`` modules of
            ``layers`` are frozen (0: none, 1: the stem, ``k``: the stem and ``layers[1..k-1]``),
            at most ``len(layers)``. ``-1`` is accepted as "none" too, as
            ``FreezeBackboneHook`` sets it.
        drop_path_rate: Stochastic depth rate of mmdet's full EfficientNet: each kept block
            gets the rate it has there (linear in the block's index over all blocks, the
            truncated ones included).
        conv_cfg: Convolution config; mmcv's ``Conv2dAdaptivePadding`` is TensorFlow's "SAME".
        norm_cfg: Normalization config (Keras: eps 1e-3; its momentum 0.99 is PyTorch's 0.01).
        act_cfg: Activation config (Swish).
        norm_eval: Keep the BN layers in eval mode (frozen statistics) while training.
        with_cp: Gradient checkpointing inside the blocks.
        init_cfg: Initialization config. ``dict(type='Pretrained', checkpoint=PATH_OR_URL)``
            accepts mmdet's or mmpretrain's EfficientNet layout; see :meth:`init_weights`.

    Example:
        >>> import torch
        >>> from rfcr.models import TruncatedEfficientNet
        >>> model = TruncatedEfficientNet(arch='b3', out_strides=(4, 8, 16, 32)).eval()
        >>> outs = model(torch.rand(1, 3, 416, 416))
        >>> for stride, out in zip(model.strides, outs):
        ...     print(stride, tuple(out.shape))
        4 (1, 32, 104, 104)
        8 (1, 48, 52, 52)
        16 (1, 136, 26, 26)
        32 (1, 232, 13, 13)
    """

    def __init__(self,
                 arch: str = 'b3',
                 out_strides: Sequence[int] = (8, 16, 32),
                 frozen_stages: int = 0,
                 drop_path_rate: float = 0.,
                 conv_cfg: OptConfigType = dict(type='Conv2dAdaptivePadding'),
                 norm_cfg: ConfigType = dict(type='BN', eps=1e-3),
                 act_cfg: ConfigType = dict(type='Swish'),
                 norm_eval: bool = False,
                 with_cp: bool = False,
                 init_cfg: OptMultiConfig = None) -> None:
        if not (isinstance(arch, str) and arch in self.arch_settings and arch[0] == 'b'):
            raise ValueError(f"arch must be one of mmdet's EfficientNet-B archs "
                             f"{tuple(a for a in self.arch_settings if a[0] == 'b')}, got "
                             f'{arch!r}')
        out_strides = check_out_strides(out_strides, _LAYER_STRIDES[1:])
        out_indices = tuple(max(i for i, s in enumerate(_LAYER_STRIDES) if s == stride)
                            for stride in out_strides)
        if (isinstance(frozen_stages, bool) or not isinstance(frozen_stages, int)
                or not -1 <= frozen_stages <= out_indices[-1] + 1):
            raise ValueError(
                f'frozen_stages must be an int in [-1, {out_indices[-1] + 1}] (the number of '
                f'modules of layers frozen; -1 and 0: none), got {frozen_stages!r}')
        if init_cfg is None:
            init_cfg = [dict(type='Kaiming', layer='Conv2d'),
                        dict(type='Constant', val=1, layer=['_BatchNorm', 'GroupNorm'])]
        self._full_drop_path_rate = drop_path_rate
        super().__init__(arch=arch, drop_path_rate=drop_path_rate, out_indices=out_indices,
                         frozen_stages=max(frozen_stages, 0), conv_cfg=conv_cfg,
                         norm_cfg=norm_cfg, act_cfg=act_cfg, norm_eval=norm_eval,
                         with_cp=with_cp, init_cfg=init_cfg)
        self.arch = arch
        self.frozen_stages = frozen_stages
        self.strides = out_strides
        self.out_channels = tuple(self.layers[i][-1].linear_conv.conv.out_channels
                                  for i in out_indices)

    def make_layer(self) -> None:
        """mmdet's ``make_layer`` on the layer settings without the last stage."""
        stages = self.layer_setting[-2]  # layers[5]: stage 6, then stage 7
        kept = [block for block in stages if block[1] != stages[-1][1]]
        total = sum(len(layer) for layer in self.layer_setting[1:-1])
        removed = len(stages) - len(kept)
        # mmdet spreads drop_path_rate linearly over the blocks it builds: scale it so that
        # every kept block gets the rate it has in the full network.
        self.drop_path_rate = self._full_drop_path_rate * (total - removed - 1) / (total - 1)
        self.layer_setting = self.layer_setting[:-2] + [kept] + self.layer_setting[-1:]
        super().make_layer()
        self.drop_path_rate = self._full_drop_path_rate

    def train(self, mode: bool = True) -> 'TruncatedEfficientNet':
        super().train(mode)  # mmdet's: frozen stages, norm_eval for nn.BatchNorm2d
        if mode and self.norm_eval:  # SyncBN too
            for m in self.modules():
                if isinstance(m, _BatchNorm):
                    m.eval()
        return self  # mmdet's EfficientNet.train() returns None

    def _truncated_key(self, key: str) -> bool:
        """Whether ``key`` (mmdet layout) is of a module mmdet's full EfficientNet has and
        this one does not build: the last stage, the final conv, modules after the last
        tap."""
        m = re.match(r'layers\.(\d+)\.(?:(\d+)\.)?', key)
        if m is None:
            return False
        i = int(m.group(1))
        if i >= len(self.layers):
            return True
        return m.group(2) is not None and i > 0 and int(m.group(2)) >= len(self.layers[i])

    def init_weights(self) -> None:
        """Initialize from ``init_cfg``, loading pretrained weights strictly.

        With ``init_cfg=dict(type='Pretrained', checkpoint=...)`` the checkpoint (local path
        or http(s) URL) is read with ``torch.load(weights_only=True)`` and may be:

        - an mmdet ``EfficientNet`` state dict (``layers.*``), optionally wrapped in
          ``{'state_dict': ...}``;
        - an mmpretrain ``ImageClassifier`` checkpoint (``backbone.layers.*``, ``head.*``),
          such as mmpretrain's ImageNet EfficientNet-B3
          (:data:`MMPRETRAIN_EFFICIENTNET_B3`);
        - any of these under ``init_cfg['prefix']`` (e.g. ``'backbone.'`` of a detector,
          as ``rfcr-convert official-yoloret`` writes).

        Keys of the truncated modules (the last stage, the final conv, modules after the
        last tap) and of the classifier are dropped and logged by name. Any other missing or
        unexpected key or any shape mismatch (another arch) raises ``ValueError``; so does a
        Keras checkpoint in a backbone without Keras' numerics. A missing local file raises
        ``FileNotFoundError`` naming where the ImageNet weights come from.
        """
        if not is_pretrained_init(self.init_cfg):
            super().init_weights()
            return
        load_pretrained(self, self._drop_truncated,
                        f"TruncatedEfficientNet(arch='{self.arch}')", _missing_checkpoint_error)
        self._is_init = True

    def _drop_truncated(self, state_dict: dict[str, Tensor]
                        ) -> tuple[dict[str, Tensor], list[str]]:
        """The backbone's tensors without those of the truncated modules, and the names of
        those dropped (the classifier's are outside the backbone)."""
        kept = {k: v for k, v in state_dict.items() if not self._truncated_key(k)}
        return kept, sorted(k for k in state_dict if k not in kept)


def _missing_checkpoint_error(checkpoint: str) -> FileNotFoundError:
    return FileNotFoundError(
        f'init_cfg.checkpoint={checkpoint!r}: no such file. mmpretrain publishes ImageNet '
        f"EfficientNet-B3 weights with Keras' numerics: {MMPRETRAIN_EFFICIENTNET_B3}")
