"""Safe checkpoint reading: tensors and plain containers only, never arbitrary objects."""
from __future__ import annotations

import os
import pickle
from typing import Any, Mapping

import torch


def is_pretrained_init(init_cfg: Any) -> bool:
    """Whether ``init_cfg`` is a single ``dict(type='Pretrained', ...)``."""
    return isinstance(init_cfg, Mapping) and init_cfg.get('type') == 'Pretrained'


def resolve_checkpoint_url(checkpoint: str) -> str:
    """Turn ``torchvision://`` and ``open-mmlab://`` names into download URLs.

    ``torchvision://MobileNet_V2_Weights.IMAGENET1K_V1`` names a torchvision weights enum
    member; ``open-mmlab://mmdet/mobilenet_v2`` an entry of mmengine's model zoo. Paths
    and http(s) URLs are returned unchanged.
    """
    if checkpoint.startswith('torchvision://'):
        from torchvision.models import get_weight
        name = checkpoint[len('torchvision://'):]
        try:
            return get_weight(name).url
        except (ValueError, KeyError, AttributeError) as e:
            raise ValueError(
                f'checkpoint={checkpoint!r}: expected torchvision://<WeightsEnum>.<member>, '
                f'e.g. torchvision://MobileNet_V2_Weights.IMAGENET1K_V1 ({e})') from e
    if checkpoint.startswith(('open-mmlab://', 'openmmlab://')):
        from mmengine.runner.checkpoint import get_external_models, get_mmcls_models
        name = checkpoint.split('://', 1)[1]
        urls = {**get_mmcls_models(), **get_external_models()}
        if name not in urls:
            raise ValueError(f'checkpoint={checkpoint!r}: {name!r} is not in mmengine\'s model zoo')
        return urls[name]
    return checkpoint


def load_state_dict(checkpoint: str, map_location: str | torch.device = 'cpu') -> dict:
    """Read a checkpoint file or URL with ``torch.load(weights_only=True)``.

    Raises:
        FileNotFoundError: for a local path that does not exist.
        ValueError: when the file holds objects beyond tensors and plain containers.
    """
    url = resolve_checkpoint_url(checkpoint)
    try:
        if url.startswith(('http://', 'https://')):
            obj = torch.hub.load_state_dict_from_url(
                url, map_location=map_location, check_hash=True, weights_only=True)
        else:
            if not os.path.isfile(url):
                raise FileNotFoundError(f'checkpoint={checkpoint!r}: no such file')
            obj = torch.load(url, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:
        raise ValueError(
            f'checkpoint={checkpoint!r} holds objects that safe loading (weights_only=True) '
            f'refuses; save the weights alone with torch.save(model.state_dict(), path). '
            f'torch said: {str(e).splitlines()[0]}') from e
    if not isinstance(obj, Mapping):
        raise ValueError(f'checkpoint={checkpoint!r} holds a {type(obj).__name__}, '
                         'expected a state dict')
    return dict(obj)


def load_checked_state_dict(module: torch.nn.Module, state_dict: Mapping[str, torch.Tensor],
                            source: str, described: str) -> None:
    """Load ``state_dict`` into ``module`` strictly, or raise ``ValueError`` listing every
    missing key, unexpected key and shape mismatch; ``source`` names the checkpoint and
    ``described`` the module in the message."""
    own = module.state_dict()
    missing = sorted(set(own) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(own))
    mismatched = sorted(f'{k}: checkpoint {tuple(state_dict[k].shape)} vs model '
                        f'{tuple(own[k].shape)}'
                        for k in set(own) & set(state_dict)
                        if state_dict[k].shape != own[k].shape)
    if missing or unexpected or mismatched:
        problems = [f'{name} ({len(keys)}): {", ".join(keys)}'
                    for name, keys in (('missing', missing), ('unexpected', unexpected),
                                       ('shape mismatch', mismatched)) if keys]
        raise ValueError(f'{source} does not match {described}: ' + '; '.join(problems))
    with torch.no_grad():
        module.load_state_dict(state_dict, strict=True)
