"""Configs and models from configs: the one place rfcr's tools, analysis and deploy code
build a model.

Example:
    >>> from rfcr.utils.config import build_model, parameter_counts
    >>> model = build_model('mmdet::yolo/yolov3_mobilenetv2_8xb24-320-300e_coco.py')
    >>> {k: round(v / 1e6, 2) for k, v in parameter_counts(model).items()}
    {'backbone': 2.22, 'neck': 1.19, 'head': 0.32, 'total': 3.74}
"""
from __future__ import annotations

import os
import os.path as osp
import re
from typing import Any, Mapping, Optional

import torch
from mmengine.config import Config
from mmengine.logging import MMLogger
from torch import nn

from mmdet.registry import MODELS
from mmdet.utils import register_all_modules

from .checkpoint import load_checked_state_dict, load_state_dict

__all__ = ['build_model', 'load_config', 'load_weights', 'model_parts', 'parameter_counts',
           'resolve_config', 'without_pretrained']


def resolve_config(path: str | os.PathLike) -> str:
    """A config path, with ``mmdet::x/y.py`` mapped into the installed mmdet package."""
    path = os.fspath(path)
    if '::' not in path:
        if not osp.isfile(path):
            raise FileNotFoundError(f'config file not found: {path}'
                                    + (' (a directory)' if osp.isdir(path) else ''))
        return path
    package, rel = path.split('::', 1)
    if package != 'mmdet':
        raise ValueError(f'only mmdet:: configs can be resolved, got {path!r}')
    import mmdet
    full = osp.join(osp.dirname(mmdet.__file__), '.mim', 'configs', rel)
    if not osp.isfile(full):
        raise FileNotFoundError(f'{path} is not in the installed mmdet ({full})')
    return full


def load_config(path: str | os.PathLike, cfg_options: Optional[dict] = None) -> Config:
    """The config at ``path`` (``mmdet::`` paths work), with overrides merged in, and
    mmdet's and rfcr's modules registered."""
    register_all_modules()  # rfcr's own are registered by importing rfcr (this package)
    path = resolve_config(path)
    try:
        cfg = Config.fromfile(path)
    except SyntaxError as e:  # mmengine parses the text: the error names no file
        raise ValueError(f'config {path}: line {e.lineno}: {e.msg}, expected Python') from e
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    return cfg


def without_pretrained(cfg: Any) -> Any:
    """A copy of the (model) config with every ``init_cfg`` that loads weights removed,
    so building and initializing reads no file and downloads nothing."""
    if isinstance(cfg, dict):
        init = cfg.get('init_cfg')
        loads = (isinstance(init, dict) and init.get('type') == 'Pretrained') or (
            isinstance(init, (list, tuple))
            and any(isinstance(i, dict) and i.get('type') == 'Pretrained' for i in init))
        return type(cfg)({k: (None if k == 'init_cfg' and loads else without_pretrained(v))
                          for k, v in cfg.items()})
    if isinstance(cfg, (list, tuple)):
        return type(cfg)(without_pretrained(v) for v in cfg)
    return cfg


def build_model(config: str | os.PathLike | Config | dict,
                checkpoint: Optional[str | os.PathLike] = None,
                cfg_options: Optional[dict] = None) -> nn.Module:
    """Build a model in eval mode, with ``checkpoint``'s weights or random ones.

    Args:
        config: A config path (``mmdet::`` paths work), a ``Config``, or a model config
            dict (anything registered in mmdet's ``MODELS``: a detector, a neck, ...).
        checkpoint: Loaded strictly by :func:`load_weights`. Without it, the weights are
            each module's ``init_weights`` from random, with every pretrained ``init_cfg``
            dropped: nothing is read or downloaded.
        cfg_options: Overrides merged into a config loaded from a path.
    """
    described = None  # the model, in a checkpoint's errors
    if isinstance(config, (str, os.PathLike)):
        config = load_config(config, cfg_options)
    if isinstance(config, Config):
        if 'model' not in config:
            raise ValueError(f'config={config.filename!r} defines no model')
        described = config.filename and f'the model of {config.filename}'
        config = config.model
    else:
        register_all_modules()
    model = MODELS.build(without_pretrained(config))
    if checkpoint is None:
        logger = MMLogger.get_current_instance()
        level = logger.level
        logger.setLevel('WARNING')  # init_weights logs every parameter at INFO
        try:
            model.init_weights()
        finally:
            logger.setLevel(level)
    else:
        load_weights(model, checkpoint, described or f'the {type(model).__name__} model')
    model.eval()  # mmdet's MobileNetV2.train() returns None: do not chain
    return model


def load_weights(model: nn.Module, checkpoint: str | os.PathLike, described: str) -> dict:
    """Load a checkpoint file's weights (a state dict, or mmengine's checkpoint holding one
    under ``state_dict``) into ``model`` strictly, and return what the file holds, read by
    :func:`~rfcr.utils.checkpoint.load_state_dict` (``weights_only=True``, mmengine's own
    checkpoints accepted, non-finite tensors refused).

    Raises:
        FileNotFoundError: no such file.
        ValueError: on one line naming the file (``described`` names ``model``): not a
            checkpoint, objects beyond tensors and containers, no state dict, NaN or inf
            (the keys and counts), or weights that do not fit ``model`` (every key missing,
            unexpected or shaped otherwise).
    """
    checkpoint = os.fspath(checkpoint)
    source = f'checkpoint={checkpoint!r}'
    loaded = load_state_dict(checkpoint)  # refuses non-finite tensors
    state_dict = loaded.get('state_dict', loaded)
    if not (isinstance(state_dict, Mapping)
            and all(isinstance(v, torch.Tensor) for v in state_dict.values())):
        raise ValueError(f'{source} holds a {type(loaded).__name__}, expected a state dict of '
                         "tensors (or a checkpoint holding one under 'state_dict')")
    # mmengine strips the prefix of a distributed wrapper's keys the same way
    state_dict = {re.sub(r'^module\.', '', k): v for k, v in state_dict.items()}
    load_checked_state_dict(model, state_dict, source, described)
    return loaded


def model_parts(model: nn.Module) -> dict[str, list[str]]:
    """Part -> names of the top-level children in it: ``backbone``, ``neck`` and ``head``
    (every other child holding parameters, e.g. ``bbox_head``, ``rpn_head``)."""
    parts: dict[str, list[str]] = {'backbone': [], 'neck': [], 'head': []}
    for name, child in model.named_children():
        if name in ('backbone', 'neck'):
            parts[name].append(name)
        elif any(True for _ in child.parameters()):
            parts['head'].append(name)
    return parts


def parameter_counts(model: nn.Module) -> dict[str, int]:
    """Parameters per part (see :func:`model_parts`) and in total."""
    children = dict(model.named_children())
    counts = {part: sum(p.numel() for n in names for p in children[n].parameters())
              for part, names in model_parts(model).items()}
    counts['total'] = sum(p.numel() for p in model.parameters())
    return counts
