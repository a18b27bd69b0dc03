"""Load mmengine checkpoints under torch's ``weights_only`` unpickler.

torch >= 2.6 loads with ``weights_only=True`` by default, and mmengine 0.10.7 calls
``torch.load`` without the argument. Its checkpoints hold, besides tensors and plain
containers, the message hub's ``HistoryBuffer`` objects: numpy arrays and scalars, and
bound methods of the buffer itself (pickled as ``getattr(buffer, 'mean')``). Exactly
those are allowed here, for the duration of a ``with`` block; the check stays on, and a
checkpoint holding anything else is refused.

``builtins.getattr`` is *not* allowed: the name is mapped to :func:`_history_buffer_method`,
which only returns the statistics methods of a ``HistoryBuffer``.
"""
from __future__ import annotations

import contextlib
import pickle
import re
from typing import Iterator

import numpy as np
import torch
from mmengine.logging import HistoryBuffer

_STATISTICS = ('min', 'max', 'mean', 'current')


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


@contextlib.contextmanager
def mmengine_checkpoint_loading() -> Iterator[None]:
    """Allow :func:`mmengine_checkpoint_globals` in ``torch.load`` inside the block.

    A checkpoint that needs anything else fails with a ``ValueError`` naming what it
    holds (from ``torch.serialization.get_unsafe_globals_in_checkpoint``).
    """
    with torch.serialization.safe_globals(mmengine_checkpoint_globals()):
        try:
            yield
        except pickle.UnpicklingError as e:
            raise ValueError(
                'checkpoint refused: it holds objects outside the allow-list of mmengine '
                'checkpoints (tensors, containers, numpy arrays/scalars, HistoryBuffer): '
                f'{_unpickler_reason(str(e))}. Only load checkpoints you trust; '
                'torch.serialization.get_unsafe_globals_in_checkpoint(path) lists what one holds.'
            ) from e


def _unpickler_reason(message: str) -> str:
    """The line of torch's weights_only error that says what was refused."""
    match = re.search(r'WeightsUnpickler error: (.*?)(?: was not an allowed global by '
                      r'default|\. Please use|$)', message, re.MULTILINE)
    return match.group(1).strip() if match else message.splitlines()[0]
