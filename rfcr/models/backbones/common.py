"""What the truncated backbones share."""
from __future__ import annotations

from typing import Iterable, Sequence


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
