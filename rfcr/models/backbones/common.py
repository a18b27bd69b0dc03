"""What the truncated backbones share: the strides check and the pretrained loader."""
from __future__ import annotations

from typing import Callable, Iterable, Mapping, Sequence

from mmengine.logging import print_log
from mmengine.model import BaseModule
from torch import Tensor

from ...utils.checkpoint import load_checked_state_dict, load_state_dict
from ..keras_compat import KERAS_META_KEY, check_keras_numerics, is_missing_local_file

# A backbone's key converter: the checkpoint's backbone tensors (prefix removed) -> those
# in the backbone's names, and the checkpoint names of the keys it dropped (the truncated
# layers, the classifier).
Converter = Callable[[dict[str, Tensor]], tuple[dict[str, Tensor], list[str]]]


def check_out_strides(out_strides: Sequence[int], available: Iterable[int]) -> tuple[int, ...]:
    """``out_strides`` as a tuple, if it is a non-empty increasing subset of ``available``.

    Raises:
        ValueError: naming the strides given and those available.
    """
    out_strides = tuple(out_strides)
    available = sorted(set(available))
    if (not out_strides or any(s not in available for s in out_strides)
            or list(out_strides) != sorted(set(out_strides))):
        raise ValueError(f'out_strides must be a non-empty increasing subset of '
                         f'{tuple(available)}, got {out_strides!r}')
    return out_strides


def backbone_state_dict(checkpoint: Mapping, prefix: str | None = None
                        ) -> tuple[dict[str, Tensor], str, list[str]]:
    """The backbone's tensors in a checkpoint, the prefix they were under, and the names of
    the other keys.

    The checkpoint may be wrapped (mmengine's ``{'state_dict': ..., 'meta': ...}``) and
    prefixed with ``module.`` (a saved DataParallel). Only keys under ``prefix`` are kept,
    without it (``'backbone'`` and ``'backbone.'`` alike); with ``prefix=None``, an
    mmpretrain ``ImageClassifier`` (``backbone.*``, ``neck.*``, ``head.*``) is recognised by
    its ``backbone.`` keys, and any other checkpoint is taken whole.

    Raises:
        ValueError: when no key starts with ``prefix``.
    """
    if isinstance(checkpoint.get('state_dict'), Mapping):
        checkpoint = checkpoint['state_dict']
    state_dict = {k: v for k, v in checkpoint.items() if k != 'meta'}
    if state_dict and all(k.startswith('module.') for k in state_dict):
        state_dict = {k[len('module.'):]: v for k, v in state_dict.items()}
    if prefix is None:
        if not any(k.startswith('backbone.') for k in state_dict):
            return state_dict, '', []
        prefix = 'backbone.'
    prefix = prefix if prefix.endswith('.') else prefix + '.'
    inside = {k[len(prefix):]: v for k, v in state_dict.items() if k.startswith(prefix)}
    if not inside:
        raise ValueError(f'the checkpoint has no key starting with prefix={prefix!r}')
    return inside, prefix, sorted(k for k in state_dict if not k.startswith(prefix))


def load_pretrained(backbone: BaseModule, convert: Converter, described: str,
                    missing_error: Callable[[str], FileNotFoundError]) -> None:
    """Load ``backbone.init_cfg = dict(type='Pretrained', checkpoint=..., prefix=...,
    map_location=...)`` strictly, and log by name every checkpoint key not loaded.

    The checkpoint (a local path, an http(s) URL, ``torchvision://`` or ``open-mmlab://``)
    is read with ``torch.load(weights_only=True)``; its backbone tensors
    (:func:`backbone_state_dict`) are renamed by ``convert`` and must then match
    ``backbone`` (``described`` in errors) exactly.

    Raises:
        FileNotFoundError: ``missing_error(checkpoint)``, for a local file that is not there.
        ValueError: for Keras weights (``meta['keras_numerics']``) in a backbone that does not
            compute Keras' numerics, a checkpoint that safe loading or ``convert`` refuses, and
            any missing or unexpected key or shape mismatch, each named.
    """
    checkpoint = backbone.init_cfg['checkpoint']
    source = f'init_cfg.checkpoint={checkpoint!r}'
    if is_missing_local_file(checkpoint):
        raise missing_error(checkpoint)
    loaded = load_state_dict(checkpoint, backbone.init_cfg.get('map_location', 'cpu'))
    meta = loaded.get('meta')
    if isinstance(meta, Mapping) and meta.get(KERAS_META_KEY):
        check_keras_numerics(backbone, source)
    try:
        state_dict, prefix, outside = backbone_state_dict(loaded, backbone.init_cfg.get('prefix'))
        kept, truncated = convert(state_dict)
    except ValueError as e:
        raise ValueError(f'{source}: {e}') from e
    load_checked_state_dict(backbone, kept, source, described)
    dropped = sorted(outside + [prefix + k for k in truncated])
    print_log(f'{type(backbone).__name__}: loaded {len(kept)} tensors from {checkpoint}; '
              f'dropped {len(dropped)} keys of the truncated layers, the classifier and '
              f'other modules: {", ".join(dropped)}', logger='current')
