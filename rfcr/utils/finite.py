"""Weights must be finite: a NaN or an infinity in one tensor makes every output NaN, so
every loader (checkpoints, converted Keras files) refuses them, with the counts."""
from __future__ import annotations

from typing import Any, Mapping

import numpy as np
import torch


def non_finite(values: torch.Tensor | np.ndarray) -> str:
    """What in ``values`` is not finite (``'3 NaN, 1 +inf of 864 values'``), or ``''``."""
    t = torch.as_tensor(values)
    if not t.is_floating_point() or bool(torch.isfinite(t).all()):
        return ''
    counts = ((int(torch.isnan(t).sum()), 'NaN'), (int(torch.isposinf(t).sum()), '+inf'),
              (int(torch.isneginf(t).sum()), '-inf'))
    return ', '.join(f'{n} {what}' for n, what in counts if n) + f' of {t.numel()} values'


def check_finite(state_dict: Mapping[str, Any], source: str) -> None:
    """Raise ``ValueError`` naming every tensor of ``state_dict`` that holds NaN or inf, with
    the counts; ``source`` names where the tensors come from (``checkpoint='x.pth'``)."""
    bad = [f'{key} ({found})' for key, value in state_dict.items()
           if isinstance(value, torch.Tensor) and (found := non_finite(value))]
    if bad:
        raise ValueError(f'{source} holds non-finite values in {len(bad)} tensor(s), expected '
                         'finite weights: ' + '; '.join(bad))
