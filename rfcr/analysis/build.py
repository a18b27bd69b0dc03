"""Build any mmdet detector from its config for analysis: random weights, nothing fetched.

Example:
    >>> from rfcr.analysis.build import build_from_config, parameter_counts
    >>> model = build_from_config('mmdet::yolo/yolov3_mobilenetv2_8xb24-320-300e_coco.py')
    >>> {k: round(v / 1e6, 2) for k, v in parameter_counts(model).items()}
    {'backbone': 2.22, 'neck': 1.19, 'head': 0.32, 'total': 3.74}
"""
from __future__ import annotations

import os.path as osp
from typing import Optional

from mmengine.config import Config
from torch import nn


def resolve_config(path: str) -> str:
    """A config path, with ``mmdet::x/y.py`` mapped into the installed mmdet package."""
    if '::' not in path:
        if not osp.isfile(path):
            raise FileNotFoundError(f'config file not found: {path}')
        return path
    package, rel = path.split('::', 1)
    if package != 'mmdet':
        raise ValueError(f'only mmdet:: configs can be resolved, got {path!r}')
    import mmdet
    full = osp.join(osp.dirname(mmdet.__file__), '.mim', 'configs', rel)
    if not osp.isfile(full):
        raise FileNotFoundError(f'{path} is not in the installed mmdet ({full})')
    return full


def load_config(path: str, cfg_options: Optional[dict] = None) -> Config:
    """The config at ``path`` (``mmdet::`` paths work), with overrides merged in."""
    import rfcr  # noqa: F401  (registers rfcr's modules even without custom_imports)
    from mmdet.utils import register_all_modules
    register_all_modules()
    cfg = Config.fromfile(resolve_config(path))
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    return cfg


def build_from_config(path_or_cfg: str | Config, cfg_options: Optional[dict] = None
                      ) -> nn.Module:
    """The config's ``model`` in eval mode, with framework-default random weights.

    ``init_weights()`` is never called, so no ``Pretrained`` checkpoint is read or
    downloaded: latency and MACs do not depend on weight values.
    """
    from mmdet.registry import MODELS
    cfg = path_or_cfg if isinstance(path_or_cfg, Config) else load_config(
        path_or_cfg, cfg_options)
    model = MODELS.build(cfg.model)
    model.eval()  # mmdet's MobileNetV2.train() returns None: do not chain
    return model


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
