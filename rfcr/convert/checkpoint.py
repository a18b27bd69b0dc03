"""Write a checkpoint whole or not at all."""
from __future__ import annotations

import os
import tempfile

import torch


def save_checkpoint(checkpoint: dict, dst: str) -> None:
    """``torch.save`` to a temporary file beside ``dst``, then rename it to ``dst``: a
    failure leaves nothing behind and an existing ``dst`` untouched."""
    directory = os.path.dirname(os.path.abspath(dst))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=f'.{os.path.basename(dst)}.', suffix='.tmp')
    try:
        with os.fdopen(fd, 'wb') as f:
            torch.save(checkpoint, f)
        os.replace(tmp, dst)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
