"""Build-time checks of a detector's channel wiring."""
from __future__ import annotations

import torch
from torch import nn

from ..utils.model import unwrap_model
from .necks.rfcr import RFCR


def _describe(module: nn.Module) -> str:
    fields = [f'{k}={getattr(module, k)!r}' for k in ('in_channels', 'shortcut_channels',
                                                      'out_channels')
              if getattr(module, k, None) is not None]
    return f'{type(module).__name__}({", ".join(fields)})'


def check_channels(model: nn.Module, input_size: int = 128) -> None:
    """Check that backbone, neck(s) and head agree on channels, before any training.

    Declared channels are compared first (a backbone's ``out_channels`` against an RFCR
    neck's inputs). Then one forward pass on a ``input_size``-square zero image runs
    through ``extract_feat`` and the head in eval mode without gradients, so a mismatch
    anywhere is reported with the component that rejected its input.

    Raises:
        ValueError: naming the component, what it expects and what it was given.
    """
    model = unwrap_model(model)
    backbone = getattr(model, 'backbone', None)
    neck = getattr(model, 'neck', None)
    head = getattr(model, 'bbox_head', None)
    if backbone is None or head is None:
        return
    necks = list(neck) if isinstance(neck, nn.Sequential) else ([neck] if neck is not None else [])
    declared = getattr(backbone, 'out_channels', None)
    if necks and isinstance(necks[0], RFCR) and isinstance(declared, (tuple, list)):
        given = tuple(declared[-necks[0].num_inputs:])
        if len(declared) < necks[0].num_inputs or given != necks[0].input_channels:
            raise ValueError(
                f'neck {_describe(necks[0])} expects inputs with channels '
                f'{necks[0].input_channels}, but the backbone {type(backbone).__name__} outputs '
                f'out_channels={tuple(declared)}')

    components = [('backbone', backbone)] + [
        (f'neck[{i}]' if len(necks) > 1 else 'neck', n) for i, n in enumerate(necks)
    ] + [('bbox_head', head)]
    seen: dict[str, tuple] = {}

    def record(name):
        def hook(module, args):
            x = args[0]
            seen['current'] = (name, module, x)
        return hook

    handles = [m.register_forward_pre_hook(record(name)) for name, m in components]
    training = model.training
    param = next(model.parameters(), None)
    device = param.device if param is not None else torch.device('cpu')
    try:
        model.eval()
        with torch.no_grad():
            feats = model.extract_feat(torch.zeros(1, 3, input_size, input_size, device=device))
            head(feats)
    except (RuntimeError, ValueError) as e:
        name, module, x = seen.get('current', ('model', model, None))
        shapes = (tuple(t.shape[1] for t in x) if isinstance(x, (tuple, list))
                  else (x.shape[1], ) if torch.is_tensor(x) else '?')
        raise ValueError(f'channel check failed in {name} {_describe(module)}, given inputs '
                         f'with channels {shapes}: {e}') from e
    finally:
        for h in handles:
            h.remove()
        model.train(training)
