"""Mixed precision on any device, CPU included."""
from __future__ import annotations

import contextlib
from typing import Iterator

import torch
from mmengine.optim import OptimWrapper
from mmengine.registry import OPTIM_WRAPPERS
from torch import nn


# Registered in mmengine's root registry, like mmengine's own optimizer wrappers.
@OPTIM_WRAPPERS.register_module()
class AutocastOptimWrapper(OptimWrapper):
    """:class:`OptimWrapper` that runs the forward pass under ``torch.autocast``.

    mmengine's ``AmpOptimWrapper`` requires CUDA. This one autocasts on the device the
    model's parameters are on, so CPU training can use bfloat16 (fast with AVX512-BF16 /
    AMX). bfloat16 has float32's exponent range, so no loss scaling is needed; float16 is
    refused here for that reason (use ``AmpOptimWrapper`` on GPUs).

    Args:
        dtype: ``'bfloat16'``.
        **kwargs: :class:`OptimWrapper` arguments.
    """

    def __init__(self, *args, dtype: str = 'bfloat16', **kwargs) -> None:
        if dtype != 'bfloat16':
            raise ValueError(f"dtype must be 'bfloat16' (no loss scaling here), got {dtype!r}")
        super().__init__(*args, **kwargs)
        self.dtype = getattr(torch, dtype)

    @contextlib.contextmanager
    def optim_context(self, model: nn.Module) -> Iterator[None]:
        param = next(model.parameters())
        with super().optim_context(model), torch.autocast(param.device.type, dtype=self.dtype):
            yield
