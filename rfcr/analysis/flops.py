"""Multiply-accumulates (MACs) of everything a model runs, per op and per module.

Every torch function a forward pass calls is recorded as it runs (a
``torch.overrides.TorchFunctionMode``), with the innermost module running it (forward
hooks) and the shapes it read and wrote. So nothing that runs is missed (mmdet's
``MobileNetV2`` computes its 1280-channel ``conv2`` even when no ``out_indices`` returns
it: a jit trace drops it, this count does not), and nothing that does not run is counted.

Counting conventions (fvcore's and mmengine's, extended): a conv costs
``out_elements * in_channels / groups * kh * kw`` multiply-accumulates, a matmul
``out_elements * inner``; BN in eval mode with affine 2 per element; element-wise ops
(e.g. RFCR's weighted sum ``mul``/``add``) and activations (``hardtanh`` = ReLU6, ReLU,
SiLU, sigmoid, ...) 1 per output element; a ``k x k`` max/avg pool ``k * k`` per output
element; nearest upsampling 1 per output element. Pure data movement (``cat``, ``pad``,
views, indexing) costs 0. Anything else that returns a tensor is reported in
:attr:`MacCount.unsupported`, never silently dropped.

Example:
    >>> import torch
    >>> from torch import nn
    >>> from rfcr.analysis.flops import count_macs
    >>> model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU6(), nn.MaxPool2d(2))
    >>> macs = count_macs(model, torch.rand(1, 3, 8, 8))
    >>> macs.total == 8 * 3 * 9 * 64 + 8 * 64 + 8 * 16 * 4  # conv, ReLU6, 2x2 max-pool
    True
    >>> dict(macs.by_operator)
    {'conv': 13824, 'hardtanh': 512, 'max_pool2d': 512}
"""
from __future__ import annotations

import inspect
from collections import Counter
from dataclasses import dataclass, field
from math import prod
from typing import Any, Callable, Optional, Sequence, Union

import torch
from torch import Tensor, nn
from torch.overrides import TorchFunctionMode

Handle = Callable[[dict, list], int]  # (bound arguments by name, output tensors) -> MACs


def _arg(bound: dict, name: str, index: int, default: Any = None) -> Any:
    """An argument by name, else by position in ``bound['*']``."""
    if name in bound:
        return bound[name]
    args = bound['*']
    return args[index] if index < len(args) else default


def _conv(bound: dict, outs: list) -> int:
    weight = _arg(bound, 'weight', 1)
    if bound['op'].startswith('conv_transpose'):  # weight (in, out / groups, *k)
        return _arg(bound, 'input', 0).numel() * prod(weight.shape[1:])
    return outs[0].numel() * prod(weight.shape[1:])  # weight (out, in / groups, *k)


def _linear(bound: dict, outs: list) -> int:
    return outs[0].numel() * _arg(bound, 'weight', 1).shape[-1]


def _matmul(bound: dict, outs: list) -> int:
    first = 1 if bound['op'] in ('addmm', 'baddbmm', 'addbmm') else 0
    return outs[0].numel() * bound['*'][first].shape[-1]


def _batch_norm(bound: dict, outs: list) -> int:
    affine = _arg(bound, 'weight', 3) is not None
    training = _arg(bound, 'training', 5, False)
    return outs[0].numel() * ((5 if affine else 4) if training else (2 if affine else 1))


def _norm(bound: dict, outs: list) -> int:
    affine = _arg(bound, 'weight', 2) is not None
    return outs[0].numel() * (5 if affine else 4)


def _pool(bound: dict, outs: list) -> int:
    kernel = _arg(bound, 'kernel_size', 1)
    spatial = outs[0].dim() - 2
    kernel = [kernel] * spatial if isinstance(kernel, int) else list(kernel)
    return outs[0].numel() * prod(kernel)


def _per_output(bound: dict, outs: list) -> int:
    return outs[0].numel()


def _per_input(bound: dict, outs: list) -> int:
    return _arg(bound, 'input', 0).numel()


def _interpolate(bound: dict, outs: list) -> int:
    return outs[0].numel() * (4 if 'linear' in bound['op'] else 1)


ELEMENTWISE_OPS = (
    'add', 'add_', 'sub', 'sub_', 'rsub', 'mul', 'mul_', 'div', 'div_', 'addcmul',
    'addcmul_', 'maximum', 'minimum', 'neg', 'exp', 'log', 'sqrt', 'rsqrt', 'pow', 'abs',
    'relu', 'relu_', 'relu6', 'hardtanh', 'hardtanh_', 'clamp', 'clamp_', 'clamp_min',
    'clamp_min_', 'leaky_relu', 'leaky_relu_', 'elu', 'elu_', 'prelu', 'silu', 'sigmoid',
    'sigmoid_', 'hardsigmoid', 'hardswish', 'mish', 'gelu', 'tanh', 'tanh_', 'softmax',
    'log_softmax', 'where')
REDUCTION_OPS = ('mean', 'sum', 'amax', 'amin', 'adaptive_avg_pool2d', 'adaptive_max_pool2d')
POOL_OPS = ('max_pool1d', 'max_pool2d', 'max_pool3d', 'avg_pool1d', 'avg_pool2d',
            'avg_pool3d', 'max_pool2d_with_indices')
# Data movement and bookkeeping: computes nothing, counted as 0.
FREE_OPS = frozenset((
    'cat', 'concat', 'stack', 'pad', 'view', 'view_as', 'reshape', 'permute', 'transpose',
    'contiguous', 'flatten', 'unflatten', 'squeeze', 'unsqueeze', 'expand', 'expand_as',
    'repeat', 'clone', 'detach', 'to', 'float', 'double', 'half', 'type', 'getitem',
    'setitem', 'split', 'chunk', 'unbind', 'narrow', 'select', 'index_select', 'slice',
    'zeros', 'ones', 'empty', 'full', 'arange', 'zeros_like', 'ones_like', 'empty_like',
    'full_like', 'new_zeros', 'new_ones', 'new_empty', 'new_full', 'new_tensor', 'tensor',
    'as_tensor', 'fill_', 'zero_', 'copy_', 'requires_grad_', 'meshgrid', 'linspace',
    't', 'numpy_T', 'masked_fill', 'masked_fill_', 'sort', 'topk', 'argmax', 'argmin'))

FLOP_HANDLES: dict[str, Handle] = {
    **{op: _conv for op in ('conv1d', 'conv2d', 'conv3d', 'conv_transpose1d',
                            'conv_transpose2d', 'conv_transpose3d')},
    'linear': _linear,
    **{op: _matmul for op in ('matmul', 'mm', 'bmm', 'addmm', 'baddbmm', 'addbmm')},
    'batch_norm': _batch_norm,
    **{op: _norm for op in ('group_norm', 'layer_norm', 'instance_norm')},
    **{op: _pool for op in POOL_OPS},
    **{op: _per_output for op in ELEMENTWISE_OPS},
    **{op: _per_input for op in REDUCTION_OPS},
    **{op: _interpolate for op in ('upsample_nearest2d', 'upsample_bilinear2d',
                                   'upsample_nearest1d', 'upsample_linear1d')},
}
# The counters' names, where an op is reported under another one (mmengine's 'conv').
OPERATOR_NAMES = {op: 'conv' for op in ('conv1d', 'conv2d', 'conv3d', 'conv_transpose1d',
                                        'conv_transpose2d', 'conv_transpose3d')}


@dataclass(frozen=True)
class OpRecord:
    """One op that ran: the module that ran it, what it read and wrote, what it cost."""
    scope: str  # the innermost module running it ('' for the root)
    kind: str  # the torch function, e.g. 'max_pool2d', 'conv2d', 'add'
    input_shapes: tuple
    output_shapes: tuple
    macs: Optional[int]  # None: no handle, not counted

    @property
    def name(self) -> str:
        """The counter's name: ``'conv'`` for any conv, else the op."""
        return OPERATOR_NAMES.get(self.kind, self.kind)


@dataclass
class MacCount:
    """MACs of one forward pass."""
    total: float = 0
    by_module: Counter = field(default_factory=Counter)  # subtree totals, '' = everything
    by_operator: Counter = field(default_factory=Counter)
    unsupported: Counter = field(default_factory=Counter)  # op -> calls not counted

    def of(self, prefix: str) -> float:
        """MACs of the module named ``prefix`` (0 if it ran nothing)."""
        return self.by_module.get(prefix, 0)


def _tensors(obj: Any) -> list[Tensor]:
    if isinstance(obj, Tensor):
        return [obj]
    if isinstance(obj, (list, tuple)):
        return [t for o in obj for t in _tensors(o)]
    if isinstance(obj, dict):
        return [t for o in obj.values() for t in _tensors(o)]
    return []


_DUNDER = {'__getitem__': 'getitem', '__setitem__': 'setitem', '__rsub__': 'rsub',
           '__truediv__': 'div', '__rtruediv__': 'div', '__itruediv__': 'div_',
           '__matmul__': 'matmul', '__rmatmul__': 'matmul'}


def op_name(func: Callable, kwargs: dict) -> str:
    """The name an op is recorded under: the function's, with operators' dunders
    mapped (``__mul__`` and ``__rmul__`` -> ``mul``, ``__iadd__`` -> ``add_``) and
    ``interpolate`` named by its mode (``upsample_nearest2d``, ...)."""
    name = getattr(func, '__name__', str(func))
    if name in _DUNDER:
        return _DUNDER[name]
    if name.startswith('__i') and name.endswith('__'):
        return name[3:-2] + '_'
    if name.startswith('__r') and name.endswith('__') and name != '__repr__':
        return name[3:-2]
    if name.startswith('__') and name.endswith('__'):
        return name[2:-2]
    if name == 'interpolate':
        mode = kwargs.get('mode', 'nearest')
        return f'upsample_{"linear" if mode == "linear" else mode}2d'
    return name


def _bind(func: Callable, name: str, args: tuple, kwargs: dict) -> dict:
    """The arguments by name where the signature is known, and positionally as ``'*'``."""
    bound = {**kwargs, 'op': name, '*': args}
    try:
        bound.update(inspect.signature(func).bind_partial(*args, **kwargs).arguments)
    except (TypeError, ValueError):  # builtins without a Python signature
        pass
    return bound


class _Recorder(TorchFunctionMode):
    """Records every torch function call (and Tensor method) with the module running it."""

    def __init__(self, scopes: list[str], handles: dict[str, Handle]) -> None:
        super().__init__()
        self.scopes = scopes
        self.handles = handles
        self.records: list[OpRecord] = []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        outs = _tensors(out)
        name = op_name(func, kwargs)
        if not outs or name in ('get', 'set'):  # shape queries, attribute access
            return out
        macs: Optional[int] = None
        if name in self.handles:
            macs = self.handles[name](_bind(func, name, args, kwargs), outs)
        elif name in FREE_OPS:
            macs = 0
        self.records.append(OpRecord(
            scope=self.scopes[-1], kind=name,
            input_shapes=tuple(tuple(t.shape) for t in _tensors((args, kwargs))),
            output_shapes=tuple(tuple(t.shape) for t in outs), macs=macs))
        return out


def trace_ops(model: nn.Module, inputs: Union[Tensor, Sequence[Any]],
              handles: Optional[dict[str, Handle]] = None) -> list[OpRecord]:
    """Every op of one ``model(*inputs)`` call in execution order, with the module that ran
    it (a single tensor may be passed as ``inputs``). Run it on a model in eval mode to
    count the inference path (it runs without autograd). Data movement is kept, with 0
    MACs (summaries show it).
    """
    handles = FLOP_HANDLES if handles is None else handles
    inputs = (inputs, ) if isinstance(inputs, Tensor) else tuple(inputs)
    names: dict[nn.Module, str] = {}
    for name, module in model.named_modules():
        names.setdefault(module, name)
    scopes = ['']

    def enter(module, args):
        scopes.append(names[module])

    def leave(module, args, output):
        scopes.pop()

    hooks = []
    for module in names:
        hooks.append(module.register_forward_pre_hook(enter))
        hooks.append(module.register_forward_hook(leave, always_call=True))
    recorder = _Recorder(scopes, handles)
    try:
        with torch.no_grad(), recorder:
            model(*inputs)
    finally:
        for h in hooks:
            h.remove()
    return recorder.records


def _ancestors(scope: str) -> list[str]:
    parts = scope.split('.') if scope else []
    return [''] + ['.'.join(parts[:i]) for i in range(1, len(parts) + 1)]


def count_macs(model: nn.Module, inputs: Union[Tensor, Sequence[Any]]) -> MacCount:
    """MACs of ``model(*inputs)``: total, per module (subtree) and per operator.

    Example:
        >>> import torch
        >>> from rfcr.models import RFCR
        >>> neck = RFCR((24, 72, 120)).eval()
        >>> feats = [torch.rand(1, 24, 40, 40), torch.rand(1, 72, 20, 20),
        ...          torch.rand(1, 120, 10, 10)]
        >>> macs = count_macs(neck, [feats])
        >>> macs.by_operator['max_pool2d'], macs.by_operator['upsample_nearest2d']
        (115200, 172800)
    """
    result = MacCount()
    for op in trace_ops(model, inputs):
        if op.macs is None:
            result.unsupported[op.kind] += 1
            continue
        if not op.macs:
            continue
        result.total += op.macs
        result.by_operator[op.name] += op.macs
        for name in _ancestors(op.scope):
            result.by_module[name] += op.macs
    return result
