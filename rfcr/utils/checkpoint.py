"""Safe checkpoint reading: tensors and plain containers only, never arbitrary objects.

torch >= 2.6 loads with ``weights_only=True`` by default, and mmengine 0.10.7 calls
``torch.load`` without the argument. Its checkpoints hold, besides tensors and plain
containers, the message hub's ``HistoryBuffer`` objects: numpy arrays and scalars, and
bound methods of the buffer itself (pickled as ``getattr(buffer, 'mean')``).
``import rfcr`` (what a config's ``custom_imports`` does) allows exactly those in torch's
``weights_only`` unpickler, process-wide (:func:`allow_mmengine_checkpoints`), so mmdet's
own ``tools/test.py`` and ``--resume`` read mmengine's checkpoints; the check stays on, and
a checkpoint holding anything else is refused. ``builtins.getattr`` is *not* allowed: the
name is mapped to :func:`_history_buffer_method`, which only returns the statistics
methods of a ``HistoryBuffer``. :func:`mmengine_checkpoint_loading` turns a refusal into a
``ValueError`` that names what the checkpoint holds.
"""
from __future__ import annotations

import contextlib
import os
import pickle
import re
from typing import Any, Iterator, Mapping

import numpy as np
import torch
from mmengine.logging import HistoryBuffer

from .finite import check_finite

_STATISTICS = ('min', 'max', 'mean', 'current')


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


def load_state_dict(checkpoint: str | os.PathLike,
                    map_location: str | torch.device = 'cpu') -> dict:
    """Read a checkpoint file or URL with ``torch.load(weights_only=True)`` (mmengine's
    checkpoints included: :func:`allow_mmengine_checkpoints`): what it holds, a mapping.
    Every tensor in it, and in its ``state_dict`` if it has one, must be finite.

    Raises:
        FileNotFoundError: for a local path that does not exist or is a directory.
        ValueError: on one line naming the checkpoint: not a file torch reads (empty, cut
            short), objects beyond the allow-list, not a mapping, NaN or inf (the keys and
            counts).
    """
    checkpoint = os.fspath(checkpoint)
    source = f'checkpoint={checkpoint!r}'
    url = resolve_checkpoint_url(checkpoint)
    try:
        with mmengine_checkpoint_loading():
            if url.startswith(('http://', 'https://')):
                obj = torch.hub.load_state_dict_from_url(
                    url, map_location=map_location, check_hash=True, weights_only=True)
            else:
                if not os.path.isfile(url):
                    raise FileNotFoundError(f'{source}: ' + (
                        'a directory, expected a checkpoint file' if os.path.isdir(url)
                        else 'no such file'))
                obj = torch.load(url, map_location=map_location, weights_only=True)
    except (EOFError, RuntimeError) as e:  # an empty or cut-short file
        reason = str(e).strip().splitlines()[0] if str(e).strip() else 'the file ends early'
        raise ValueError(f'{source} is not a checkpoint that torch.load reads '
                         f'({type(e).__name__}: {reason})') from e
    if not isinstance(obj, Mapping):
        raise ValueError(f'{source} holds a {type(obj).__name__}, expected a state dict of '
                         "tensors (or a checkpoint holding one under 'state_dict')")
    check_finite(obj, source)
    if isinstance(obj.get('state_dict'), Mapping):
        check_finite(obj['state_dict'], source)
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


def _history_buffer_method(obj, name: str):
    """``getattr`` restricted to the statistics methods mmengine pickles.

    ``HistoryBuffer._statistics_methods`` maps names to its methods; pickle stores each
    as ``getattr(HistoryBuffer, name)``.
    """
    is_buffer = obj is HistoryBuffer or isinstance(obj, HistoryBuffer)
    if is_buffer and (name in _STATISTICS or name in HistoryBuffer._statistics_methods):
        return getattr(obj, name)
    raise pickle.UnpicklingError(
        f'refusing getattr({type(obj).__name__}, {name!r}) while loading a checkpoint')


def _numpy_core(name: str):
    for module in ('numpy._core.multiarray', 'numpy.core.multiarray'):
        with contextlib.suppress(ImportError, AttributeError):
            mod = __import__(module, fromlist=[name])
            return getattr(mod, name)
    raise ImportError(name)


def mmengine_checkpoint_globals() -> list:
    """Everything a checkpoint saved by mmengine's Runner needs beyond torch's defaults."""
    reconstruct = _numpy_core('_reconstruct')
    scalar = _numpy_core('scalar')
    allowed: list = [HistoryBuffer, np.ndarray, np.dtype]
    # numpy 1.x pickles under numpy.core, 2.x under numpy._core: accept both spellings.
    for core in ('numpy.core.multiarray', 'numpy._core.multiarray'):
        allowed += [(reconstruct, f'{core}._reconstruct'), (scalar, f'{core}.scalar')]
    allowed += [(_history_buffer_method, 'builtins.getattr')]
    # numpy >= 1.25 may pickle dtypes by their class (numpy.dtypes.Float64DType, ...).
    dtypes = getattr(np, 'dtypes', None)
    if dtypes is not None:
        allowed += [getattr(dtypes, n) for n in dir(dtypes) if n.endswith('DType')
                    and isinstance(getattr(dtypes, n), type)]
    return allowed


def allow_mmengine_checkpoints() -> None:
    """Allow :func:`mmengine_checkpoint_globals` in every ``torch.load(weights_only=True)``
    of this process (``torch.serialization.add_safe_globals``; calling it again adds
    nothing). ``import rfcr`` calls it."""
    torch.serialization.add_safe_globals(mmengine_checkpoint_globals())


@contextlib.contextmanager
def mmengine_checkpoint_loading() -> Iterator[None]:
    """Inside the block, a checkpoint that needs more than the allow-list (which
    ``import rfcr`` registered, :func:`allow_mmengine_checkpoints`) fails with a
    ``ValueError`` naming what it holds instead of torch's ``UnpicklingError``."""
    try:
        yield
    except pickle.UnpicklingError as e:
        raise ValueError(
            'checkpoint refused by safe loading (torch.load weights_only=True): '
            f'{_unpickler_reason(str(e))}; it allows tensors, containers and what mmengine '
            'checkpoints hold (numpy arrays and scalars, HistoryBuffer). Only load '
            'checkpoints you trust; torch.serialization.get_unsafe_globals_in_checkpoint(path) '
            'lists what one holds.'
        ) from e


def _unpickler_reason(message: str) -> str:
    """What torch's weights_only error says was refused (``Unsupported global: GLOBAL
    argparse.Namespace``; for a file that is no pickle, ``Unsupported operand 103``), on one
    line."""
    match = re.search(r'WeightsUnpickler error:\s*(.*?)(?:\s+was not an allowed global by '
                      r'default|\.\s*Please use|\s*Check the documentation|$)', message, re.DOTALL)
    reason = ' '.join(match.group(1).split()) if match else ''
    return reason or (message.strip().splitlines() or ['unreadable'])[0]
