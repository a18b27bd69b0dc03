"""Folded inference inside mmdet's loops, where a config or ``rfcr-test --deploy`` asks."""
from __future__ import annotations

import copy
from typing import Optional

import torch
from mmengine.hooks import Hook
from mmengine.logging import print_log

from mmdet.registry import HOOKS

from ..utils.model import unwrap_model
from .export import flatten_outputs
from .fold import switch_to_deploy


@HOOKS.register_module()
class SwitchToDeployHook(Hook):
    """Validate and test the model folded for inference (:func:`switch_to_deploy`).

    - Testing (``rfcr-test --deploy``): the model is folded in place after the checkpoint
      is loaded, like mmdet's ``--fuse-conv-bn`` and mmyolo's ``--deploy``.
    - Validation during training (``custom_hooks = [dict(type='SwitchToDeployHook')]``):
      each validation runs a folded *copy* of the current weights (EMA weights included,
      where an ``EMAHook`` swapped them in); training goes on with the model as it is.

    Before its first validation or test, the folded model's raw outputs are compared with
    the model's on one random image; a difference above ``atol`` times the largest output
    magnitude raises ``RuntimeError``: folding is exact or nothing is reported.

    Args:
        check_size: Side of the random image for the check (0: no check).
        atol: Tolerance of the check, relative to the largest output magnitude.
    """

    # After EMAHook (NORMAL) has swapped its weights in, before CheckpointHook (VERY_LOW)
    # saves the best checkpoint, which must be the trained model's.
    priority = 'LOW'

    def __init__(self, check_size: int = 64, atol: float = 1e-4) -> None:
        if isinstance(check_size, bool) or not isinstance(check_size, int) or check_size < 0:
            raise ValueError(f'check_size must be an int >= 0, got {check_size!r}')
        if not atol > 0:
            raise ValueError(f'atol must be > 0, got {atol!r}')
        self.check_size = check_size
        self.atol = atol
        self._checked = False
        self._training_model: Optional[torch.nn.Module] = None

    def _fold(self, model: torch.nn.Module, in_place: bool) -> torch.nn.Module:
        model.eval()  # mmdet's MobileNetV2.train() returns None: do not chain
        x = None
        if self.check_size and not self._checked:
            param = next(model.parameters())
            x = torch.rand(1, 3, self.check_size, self.check_size,
                           generator=torch.Generator().manual_seed(0)).to(param.device)
            with torch.no_grad():
                expected = flatten_outputs(model(x, mode='tensor'))
        folded = switch_to_deploy(model if in_place else copy.deepcopy(model))
        if x is not None:
            with torch.no_grad():
                got = flatten_outputs(folded(x, mode='tensor'))
            scale = max(float(t.abs().max()) for t in expected)
            diff = max(float((a - b).abs().max()) for a, b in zip(expected, got))
            if len(got) != len(expected) or diff > self.atol * max(scale, 1.0):
                raise RuntimeError(f'SwitchToDeployHook: the folded model differs from the '
                                   f'model by {diff:.3g} (outputs up to {scale:.3g}); '
                                   f'atol={self.atol} relative')
            print_log(f'SwitchToDeployHook: folded model checked, max |diff| {diff:.2e} '
                      f'(outputs up to {scale:.3g})', logger='current')
            self._checked = True
        return folded

    def before_val_epoch(self, runner) -> None:
        self._training_model = runner.model
        runner.model = self._fold(unwrap_model(runner.model), in_place=False)

    def after_val_epoch(self, runner, metrics=None) -> None:
        if self._training_model is not None:
            runner.model = self._training_model
            self._training_model = None

    def before_test_epoch(self, runner) -> None:
        model = unwrap_model(runner.model)
        folded = self._fold(model, in_place=True)
        if folded is not model:  # the model itself had a deploy form
            runner.model = folded
