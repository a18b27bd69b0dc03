"""Training-schedule hooks."""
from __future__ import annotations

import torch
from mmengine.hooks import Hook
from mmengine.logging import print_log

from mmdet.registry import HOOKS

from ..utils.model import unwrap_model


@HOOKS.register_module()
class FreezeBackboneHook(Hook):
    """Train with a frozen backbone until ``unfreeze_epoch``, then train everything.

    The official YOLO-ReT schedule: phase 1 trains the neck and head on a frozen
    ImageNet backbone (weights and BN statistics fixed), phase 2 unfreezes it. The
    backbone must have ``frozen_stages`` semantics (``TruncatedMobileNetV2`` and mmdet's
    ``MobileNetV2`` do): the hook sets it to ``frozen_stages`` for phase 1 and to -1 after.

    Build the model unfrozen (``frozen_stages=-1``) so that a distributed wrapper
    registers every parameter, and keep ``find_unused_parameters=True`` for DDP: frozen
    parameters then take no part in the backward and need no gradient sync.

    Args:
        unfreeze_epoch: First epoch (0-based) of phase 2.
        frozen_stages: ``frozen_stages`` of the backbone during phase 1.
    """

    priority = 'NORMAL'

    def __init__(self, unfreeze_epoch: int, frozen_stages: int = 6) -> None:
        if not isinstance(unfreeze_epoch, int) or unfreeze_epoch < 0:
            raise ValueError(f'unfreeze_epoch must be an int >= 0, got {unfreeze_epoch!r}')
        self.unfreeze_epoch = unfreeze_epoch
        self.frozen_stages = frozen_stages

    def _backbone(self, runner):
        model = unwrap_model(runner.model)
        backbone = model.backbone
        if not hasattr(backbone, 'frozen_stages'):
            raise TypeError(f'FreezeBackboneHook needs a backbone with `frozen_stages`, got '
                            f'{type(backbone).__name__}')
        return backbone

    def _apply(self, runner) -> None:
        backbone = self._backbone(runner)
        frozen = runner.epoch < self.unfreeze_epoch
        target = self.frozen_stages if frozen else -1
        if backbone.frozen_stages == target:
            return
        backbone.frozen_stages = target
        if not frozen:
            backbone.requires_grad_(True)
        backbone.train(backbone.training)  # re-applies _freeze_stages and norm_eval
        print_log(f'FreezeBackboneHook: epoch {runner.epoch}: backbone '
                  f'{"frozen (frozen_stages=%d)" % target if frozen else "unfrozen"}',
                  logger='current')

    def before_train(self, runner) -> None:
        self._apply(runner)

    def before_train_epoch(self, runner) -> None:
        self._apply(runner)


@HOOKS.register_module()
class ChannelsLastHook(Hook):
    """Keep the model's 4-D parameters and buffers in ``channels_last`` memory format.

    Convolutions then produce channels_last outputs, which oneDNN (CPU) and cuDNN run
    faster for MobileNet-style networks. The model's outputs are unchanged.
    """

    priority = 'VERY_HIGH'

    def before_run(self, runner) -> None:
        model = unwrap_model(runner.model)
        model.to(memory_format=torch.channels_last)
