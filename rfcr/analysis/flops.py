"""Multiply-accumulates (MACs) of everything a model runs, per op and per module.

Counted on a jit trace with ``mmengine.analysis``'s tracer and op handles (convolutions,
matmuls, norms, resizes: one multiply-accumulate per MAC, as fvcore and mmengine count),
extended in two ways:

- **ops mmengine skips or ignores are counted**: max/avg pooling (one op per window
  element read), element-wise ``mul``/``add``/``addcmul`` (e.g. RFCR's weighted sum) and
  activations (``hardtanh`` = ReLU6, ReLU, SiLU, sigmoid, ...), one op per output
  element. Pure data movement (``cat``, ``pad``, views) costs 0. Anything else is
  reported in :attr:`MacCount.unsupported`, never silently dropped;
- **what runs is what counts**: a jit trace drops ops whose results are never used
  (mmdet's ``MobileNetV2`` computes its 1280-channel ``conv2`` even when no
  ``out_indices`` returns it). Every submodule's output is kept alive as an extra trace
  output, so the trace keeps every module that actually ran.

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

import warnings
from collections import Counter
from dataclasses import dataclass, field
from math import prod
from typing import Any, Callable, Optional, Sequence, Union

import torch
from mmengine.analysis.complexity_analysis import _DEFAULT_SUPPORTED_FLOP_OPS
from mmengine.analysis.jit_analysis import _IGNORED_OPS, _get_scoped_trace_graph
from mmengine.analysis.jit_handles import get_shape
from torch import Tensor, nn

Handle = Callable[[list, list], Union[int, float, Counter]]


def _numel(value: Any) -> int:
    shape = get_shape(value)
    return prod(shape) if shape is not None else 0


def per_output_element(inputs: list, outputs: list) -> int:
    """One op per element of the first output (element-wise ops, activations)."""
    return _numel(outputs[0])


def per_input_element(inputs: list, outputs: list) -> int:
    """One op per element of the first input (reductions)."""
    return _numel(inputs[0])


def _int_list(value: Any) -> list[int]:
    """A traced ``int[]`` argument: a constant, or a ``prim::ListConstruct`` of them."""
    constant = value.toIValue()
    if constant is not None:
        return list(constant) if isinstance(constant, (list, tuple)) else [constant]
    return [v.toIValue() for v in value.node().inputs()]


def pool_window(inputs: list, outputs: list) -> int:
    """One op per window element read: output elements x kernel area."""
    kernel = _int_list(inputs[1])
    spatial = len(get_shape(outputs[0])) - 2
    return _numel(outputs[0]) * prod(kernel * spatial if len(kernel) == 1 else kernel)


ELEMENTWISE_OPS = (
    'add', 'add_', 'sub', 'sub_', 'rsub', 'mul', 'mul_', 'div', 'div_', 'addcmul',
    'addcmul_', 'maximum', 'minimum', 'neg', 'exp', 'log', 'sqrt', 'rsqrt', 'pow', 'abs',
    'relu', 'relu_', 'relu6', 'relu6_', 'hardtanh', 'hardtanh_', 'clamp', 'clamp_',
    'clamp_min', 'clamp_min_', 'leaky_relu', 'leaky_relu_', 'elu', 'elu_', 'prelu', 'silu',
    'silu_', 'sigmoid', 'sigmoid_', 'hardsigmoid', 'hardsigmoid_', 'hardswish',
    'hardswish_', 'mish', 'gelu', 'tanh', 'tanh_', 'softmax', 'log_softmax', 'where')
REDUCTION_OPS = ('mean', 'sum', 'amax', 'amin', 'max', 'min')
POOL_OPS = ('max_pool2d', 'max_pool2d_with_indices', 'avg_pool2d', 'max_pool1d',
            'avg_pool1d', 'max_pool3d', 'avg_pool3d')
# Data movement: computes nothing. Counted as 0 (mmengine already ignores cat, views).
FREE_OPS = ('pad', 'constant_pad_nd', 'replication_pad2d', 'reflection_pad2d', 'clone',
            'alias', 'unflatten', 'expand_as', 'repeat', 'index_select', 'fill_', 'zero_',
            'empty_like', 'ones_like', 'lift_fresh', 'detach_', 'masked_fill_', 'sort',
            'topk', 'argmax', 'meshgrid', 'linspace', 'scalar_tensor', 'numpy_T',
            'new_ones', 'expand', 'contiguous', 'resolve_conj', 'resolve_neg')

FLOP_HANDLES: dict[str, Optional[Handle]] = {
    **_DEFAULT_SUPPORTED_FLOP_OPS,
    **{f'aten::{op}': per_output_element for op in ELEMENTWISE_OPS},
    **{f'aten::{op}': per_input_element for op in REDUCTION_OPS},
    **{f'aten::{op}': pool_window for op in POOL_OPS},
}
IGNORED_OPS = frozenset(_IGNORED_OPS | {f'aten::{op}' for op in FREE_OPS}) - set(FLOP_HANDLES)


@dataclass(frozen=True)
class OpRecord:
    """One traced op: the module that ran it, what it read and wrote, what it cost."""
    scope: str  # the innermost module running it ('' for the root)
    kind: str  # e.g. 'aten::max_pool2d'
    input_shapes: tuple
    output_shapes: tuple
    macs: Optional[float]  # None: no handle, not counted
    operator: str = ''  # the counter's name, e.g. 'conv' for aten::_convolution

    @property
    def name(self) -> str:
        return self.operator or self.kind.split('::')[-1]


@dataclass
class MacCount:
    """MACs of one traced forward pass."""
    total: float = 0
    by_module: Counter = field(default_factory=Counter)  # subtree totals, '' = everything
    by_operator: Counter = field(default_factory=Counter)
    unsupported: Counter = field(default_factory=Counter)  # op kind -> calls not counted

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


def _aliases(model: nn.Module) -> dict:
    """Module -> its first name and name -> canonical name, as mmengine's analysis uses."""
    aliases: dict = {}
    for name, module in model.named_modules(remove_duplicate=False):
        aliases.setdefault(module, name)
        aliases[name] = aliases[module]
    return aliases


def _trace_everything(model: nn.Module, inputs: tuple, aliases: dict) -> torch._C.Graph:
    """The scoped trace graph, with every submodule output kept as a graph output."""
    kept: list[Tensor] = []

    def keep(module, args, output):
        kept.extend(_tensors(output))

    def return_all(module, args, output):
        return tuple(_tensors(output)) + tuple(kept)

    # Registered before mmengine's scope hooks, so on the root ours runs first.
    handles = [m.register_forward_hook(keep) for m in model.modules() if m is not model]
    handles.append(model.register_forward_hook(return_all))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter('ignore')  # tracer warnings about Python control flow
            return _get_scoped_trace_graph(model, inputs, aliases)
    finally:
        for h in handles:
            h.remove()


def trace_ops(model: nn.Module, inputs: Union[Tensor, Sequence[Tensor]],
              handles: Optional[dict[str, Optional[Handle]]] = None) -> list[OpRecord]:
    """Every op of one forward pass in execution order, with the module that ran it.

    ``inputs`` is what ``model(*inputs)`` takes (a single tensor may be passed as is).
    Run in eval mode without gradients to count the inference path. ``prim::`` and shape
    bookkeeping ops are dropped; data movement is kept with 0 MACs (summaries show it).
    """
    handles = FLOP_HANDLES if handles is None else handles
    inputs = (inputs, ) if isinstance(inputs, Tensor) else tuple(inputs)
    graph = _trace_everything(model, inputs, _aliases(model))
    records = []
    for node in graph.nodes():
        kind = node.kind()
        if kind.startswith('prim::') and not kind.startswith('prim::PythonOp'):
            continue
        if kind == 'prim::PythonOp':
            kind = f'{kind}.{node.pyname()}'
        node_inputs, node_outputs = list(node.inputs()), list(node.outputs())
        operator = ''
        if handles.get(kind) is not None:
            macs = handles[kind](node_inputs, node_outputs)
            if isinstance(macs, Counter):  # mmengine's conv handle names its counter
                operator = next(iter(macs), '')
                macs = sum(macs.values())
        elif kind in IGNORED_OPS or kind in handles:
            macs = 0
        else:
            macs = None
        records.append(OpRecord(
            scope=node.scopeName().split('/')[-1], kind=kind,
            input_shapes=tuple(_shape(v) for v in node_inputs),
            output_shapes=tuple(_shape(v) for v in node_outputs), macs=macs,
            operator=operator))
    return records


def _shape(value) -> Optional[tuple]:
    shape = get_shape(value)
    return tuple(shape) if shape is not None else None


def _ancestors(scope: str) -> list[str]:
    parts = scope.split('.') if scope else []
    return [''] + ['.'.join(parts[:i]) for i in range(1, len(parts) + 1)]


def count_macs(model: nn.Module, inputs: Union[Tensor, Sequence[Tensor]]) -> MacCount:
    """MACs of ``model(*inputs)``: total, per module (subtree) and per operator.

    Example:
        >>> import torch
        >>> from rfcr.models import RFCR
        >>> neck = RFCR((24, 72, 120)).eval()
        >>> feats = [torch.rand(1, 24, 40, 40), torch.rand(1, 72, 20, 20),
        ...          torch.rand(1, 120, 10, 10)]
        >>> with torch.no_grad():
        ...     macs = count_macs(neck, [feats])
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
