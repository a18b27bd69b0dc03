"""Helpers on models that every layer may need."""
from __future__ import annotations

from mmengine.model import is_model_wrapper
from torch import nn


def unwrap_model(model: nn.Module) -> nn.Module:
    """The model inside an mmengine model wrapper (DDP, FSDP, ...); ``model`` itself if it
    is not wrapped."""
    return model.module if is_model_wrapper(model) else model
