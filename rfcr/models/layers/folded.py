"""Eval-mode fast path shared by rfcr's modules: run a folded copy of the current weights.

At inference a conv -> BN -> activation is one conv with a bias and a fused activation,
RFCR's fusion scalars belong in its collect convs, and YOLOReTNeck's linear projections
compose with the 1x1 convs that read them (:mod:`rfcr.deploy`). :class:`FoldedInference`
gives a module that speed in plain eval mode: when it runs in eval mode without autograd
or tracers (:func:`~rfcr.models.layers.resize.eager_inference`), its ``forward`` calls a
folded copy built by :meth:`~FoldedInference.build_folded` instead of its own layers.

The copy follows the weights: it is rebuilt whenever any parameter or buffer has been
modified in place (version counter) or replaced (data pointer), as an optimizer step or
``load_state_dict`` does, or a submodule has been added or replaced; it is dropped by
``train()``/``eval()``, device, dtype and memory format conversions, ``deepcopy`` and
pickling. It is not a submodule: ``state_dict``,
``parameters()`` and ``modules()`` do not see it. Training, autograd, tracing and ONNX
export take the module's own layers, so exported graphs and gradients are unchanged;
outputs are equal up to float rounding (tested to 1e-4). While a forward hook or
pre-hook is registered on one of the module's submodules (or globally), the own layers
run too, so the hook sees them. :func:`own_layers` switches the fast path off.
"""
from __future__ import annotations

import contextlib
from typing import Iterator, Optional

import torch
from torch import nn
from torch.nn.modules import module as _module

from .resize import eager_inference

_CACHE = '_folded_cache'
_state = {'enabled': True}


@contextlib.contextmanager
def own_layers() -> Iterator[None]:
    """Inside, every module runs its own layers, never a folded copy: for forward hooks
    on its submodules (``rfcr-summary``), profiling them, or A/B timing."""
    previous = _state['enabled']
    _state['enabled'] = False
    try:
        yield
    finally:
        _state['enabled'] = previous


def _watch(module: nn.Module) -> dict:
    """What to watch: the submodules, their children, and every parameter and buffer."""
    modules = list(module.modules())
    tensors = [t for m in modules for d in (m._parameters, m._buffers)
               for t in d.values() if t is not None]
    if any(t.is_inference() for t in tensors):
        tensors = None  # made under inference_mode: no version counters to watch; never fold
    return dict(modules=modules, children=[tuple(m._modules.values()) for m in modules],
                tensors=tensors, key=None, folded=None)


def _restructured(cache: dict) -> bool:
    return any(tuple(m._modules.values()) != children
               for m, children in zip(cache['modules'], cache['children']))


def _hooked(modules: list) -> bool:
    """Whether a forward (pre-)hook is registered on a submodule (``modules[1:]``) or
    globally: such hooks expect the own layers to run (feature extraction, visualization).
    Hooks on the module itself see the same inputs and outputs either way."""
    if _module._global_forward_hooks or _module._global_forward_pre_hooks:
        return True
    return any(m._forward_hooks or m._forward_pre_hooks for m in modules[1:])


class FoldedInference:
    """Mixin for an ``nn.Module``: :meth:`folded_inference` returns the folded copy to run,
    or ``None`` where the module's own layers must run. Subclasses define
    :meth:`build_folded`."""

    def build_folded(self) -> nn.Module:
        """A module computing ``forward``'s function in eval mode from the current weights,
        without modifying them. Raise ``TypeError``/``ValueError`` where that is not
        possible (e.g. a norm layer that does not fold): the own layers then run."""
        raise NotImplementedError

    def folded_inference(self) -> Optional[nn.Module]:
        if (self.training or not _state['enabled'] or self.__dict__.get('_is_folded_copy')
                or not eager_inference()):
            return None
        cache = self.__dict__.get(_CACHE)
        if cache is None or _restructured(cache):  # a submodule added or replaced
            cache = self.__dict__[_CACHE] = _watch(self)
        if cache['tensors'] is None or _hooked(cache['modules']):
            return None
        key = [(t.data_ptr(), t._version) for t in cache['tensors']]
        if key != cache['key']:
            with torch.inference_mode(False), torch.no_grad():
                try:
                    cache['folded'] = self.build_folded()
                except (TypeError, ValueError):
                    cache['folded'] = None  # not foldable: the own layers run
            cache['key'] = key
        return cache['folded']

    def train(self, mode: bool = True):
        self.__dict__.pop(_CACHE, None)
        return super().train(mode)

    def _apply(self, *args, **kwargs):
        self.__dict__.pop(_CACHE, None)  # .to(), .cuda(), ... may swap the tensors
        return super()._apply(*args, **kwargs)

    def __getstate__(self) -> dict:
        state = dict(super().__getstate__())
        state.pop(_CACHE, None)
        return state
