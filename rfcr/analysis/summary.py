"""A model's data flow, stage by stage, functional ops included.

A printed ``nn.Module`` lists layers, not what ``forward`` does between them: RFCR's
pools, upsamplings, weighted sum and concatenations are invisible in it. Here the stages
come from the ops recorded as they run (:func:`rfcr.analysis.flops.trace_ops`), each
placed under the module that ran it; module outputs and latency come from forward hooks
on an eager run.

Rows are modules down to ``depth`` (``ModuleList``/``ModuleDict`` containers, which never
run, do not count as a level) and, under them, the functional ops they run themselves:
pooling, resizing, concatenation, padding and element-wise arithmetic (consecutive
element-wise ops merge into one row, e.g. RFCR's weighted sum ``mul x3 + add x2``).

Example:
    >>> import torch
    >>> from rfcr.models import RFCR
    >>> from rfcr.analysis.summary import summarize
    >>> neck = RFCR((24, 72, 120)).eval()
    >>> feats = [torch.rand(1, 24, 40, 40), torch.rand(1, 72, 20, 20),
    ...          torch.rand(1, 120, 10, 10)]
    >>> rows = summarize(neck, [feats], input_size=(320, 320), runs=1)
    >>> for row in rows[:7]:
    ...     print(f"{'- ' if row.is_op else ''}{row.label}", row.shapes[0])
    (total) (1, 120, 40, 40)
    collect_convs.0 (1, 48, 40, 40)
    - max_pool2d (1, 48, 20, 20)
    collect_convs.1 (1, 48, 20, 20)
    collect_convs.2 (1, 48, 10, 10)
    - upsample_nearest2d (1, 48, 20, 20)
    - mul x3 + add x2 (1, 48, 20, 20)
"""
from __future__ import annotations

import statistics
import time
from collections import Counter
from dataclasses import dataclass
from typing import Any, Optional, Sequence, Union

import torch
from torch import Tensor, nn

from .flops import OpRecord, _tensors, trace_ops
from .latency import synchronizer

# Functional ops worth a row: they move data between scales or merge maps.
DATAFLOW_OPS = ('max_pool2d', 'avg_pool2d', 'adaptive_avg_pool2d', 'adaptive_max_pool2d',
                'upsample_nearest2d', 'upsample_bilinear2d', 'grid_sampler', 'cat', 'stack',
                'pad', 'constant_pad_nd', 'replication_pad2d', 'reflection_pad2d')
ARITHMETIC_OPS = ('add', 'add_', 'sub', 'sub_', 'mul', 'mul_', 'div', 'div_', 'addcmul',
                  'addcmul_', 'maximum', 'minimum', 'softmax', 'sigmoid', 'matmul', 'bmm')
CONTAINERS = (nn.ModuleList, nn.ModuleDict)


@dataclass
class Row:
    """One stage: a module (``is_op`` False) or a functional op run by ``owner``."""
    label: str  # module name, or op name(s)
    kind: str  # module class, or 'op'
    owner: str  # the module this row belongs to ('' for the root)
    depth: int
    shapes: list  # output shapes
    macs: float
    params: Optional[int] = None
    seconds: Optional[float] = None  # median inclusive time (modules only)
    is_op: bool = False


def _display_depths(model: nn.Module) -> dict[str, int]:
    """Name -> nesting level counting only modules that run (not ModuleList/Dict)."""
    depths = {'': 0}
    for name, module in model.named_modules():
        if not name:
            continue
        parent = name.rpartition('.')[0]
        depths[name] = depths[parent] + (0 if isinstance(module, CONTAINERS) else 1)
    return depths


def _time_modules(model: nn.Module, inputs: tuple, names: set[str], runs: int,
                  device: torch.device) -> dict[str, float]:
    """Median inclusive seconds per call of the named modules, over ``runs`` passes."""
    sync = synchronizer(device)
    starts: dict[str, list[float]] = {}
    times: dict[str, list[float]] = {n: [] for n in names}

    def pre(name):
        def hook(module, args):
            sync()
            starts.setdefault(name, []).append(time.perf_counter())
        return hook

    def post(name):
        def hook(module, args, output):
            sync()
            times[name].append(time.perf_counter() - starts[name].pop())
        return hook

    modules = dict(model.named_modules())
    handles = []
    for name in names:
        handles.append(modules[name].register_forward_pre_hook(pre(name)))
        handles.append(modules[name].register_forward_hook(post(name)))
    try:
        model(*inputs)  # warm-up
        for ts in times.values():
            ts.clear()
        for _ in range(runs):
            model(*inputs)
    finally:
        for h in handles:
            h.remove()
    return {n: statistics.median(ts) / max(len(ts) // runs, 1) for n, ts in times.items() if ts}


def _output_shapes(model: nn.Module, inputs: tuple) -> dict[str, list[tuple]]:
    """Output shapes of every module's first call."""
    shapes: dict[str, list[tuple]] = {}
    handles = []
    for name, module in model.named_modules():
        def hook(module, args, output, name=name):
            shapes.setdefault(name, [tuple(t.shape) for t in _tensors(output)])
        handles.append(module.register_forward_hook(hook))
    try:
        model(*inputs)
    finally:
        for h in handles:
            h.remove()
    return shapes


def summarize(model: nn.Module, inputs: Union[Tensor, Sequence[Any]], depth: int = 3,
              input_size: Optional[tuple[int, int]] = None, runs: int = 10) -> list[Row]:
    """Stages of ``model(*inputs)`` in execution order (see the module docstring).

    Run it on a model in eval mode; it records the ops (:func:`~rfcr.analysis.flops.
    trace_ops`) and times the modules without gradients.

    Args:
        model: Any ``nn.Module``; a detector runs its tensor-mode forward.
        inputs: What ``model(*inputs)`` takes (a single tensor may be passed as is).
        depth: Deepest module level listed (the root's children are level 1).
        input_size: The image (H, W) that strides are relative to. Default: the last two
            dims of the first input tensor.
        runs: Timed passes for the latency shares (0: no timing).
    """
    if depth < 1:
        raise ValueError(f'depth must be >= 1, got {depth!r}')
    inputs = (inputs, ) if isinstance(inputs, Tensor) else tuple(inputs)
    records = trace_ops(model, inputs)
    with torch.no_grad():
        shapes = _output_shapes(model, inputs)
    depths = _display_depths(model)
    modules = dict(model.named_modules())

    def shown(scope: str) -> str:
        """The deepest listed module that is ``scope`` or contains it."""
        while scope and (depths.get(scope, depth + 1) > depth
                         or isinstance(modules.get(scope), CONTAINERS)):
            scope = scope.rpartition('.')[0]
        return scope

    subtree_macs: Counter = Counter()
    for op in records:
        parts = op.scope.split('.') if op.scope else []
        for i in range(len(parts) + 1):
            subtree_macs['.'.join(parts[:i])] += op.macs or 0

    rows: list[Row] = []
    seen: set[str] = set()
    for op in records:
        owner = shown(op.scope)
        # Rows for every listed module on the way down to the op's owner, first entry.
        chain = []
        scope = owner
        while scope and scope not in seen:
            chain.append(scope)
            scope = shown(scope.rpartition('.')[0])
        for name in reversed(chain):
            seen.add(name)
            rows.append(Row(label=name, kind=type(modules[name]).__name__, owner=name,
                            depth=depths[name], shapes=shapes.get(name, []),
                            macs=subtree_macs[name],
                            params=sum(p.numel() for p in modules[name].parameters())))
        if op.scope != owner or op.name.split('.')[-1] not in DATAFLOW_OPS + ARITHMETIC_OPS:
            continue  # inside an unlisted child, or bookkeeping
        _add_op_row(rows, op, owner, depths.get(owner, 0) + 1)

    if runs > 0:
        device = next((t.device for t in _tensors(inputs)), torch.device('cpu'))
        names = {r.label for r in rows if not r.is_op} | {''}
        with torch.no_grad():
            times = _time_modules(model, inputs, names, runs, device)
        for r in rows:
            if not r.is_op:
                r.seconds = times.get(r.label)
        rows.insert(0, Row(label='(total)', kind=type(model).__name__, owner='', depth=0,
                           shapes=shapes.get('', []), macs=subtree_macs[''],
                           params=sum(p.numel() for p in model.parameters()),
                           seconds=times.get('')))
    else:
        rows.insert(0, Row(label='(total)', kind=type(model).__name__, owner='', depth=0,
                           shapes=shapes.get('', []), macs=subtree_macs[''],
                           params=sum(p.numel() for p in model.parameters())))
    size = input_size or next((tuple(t.shape[-2:]) for t in _tensors(inputs) if t.dim() == 4),
                              None)
    for r in rows:
        r.strides = [_stride(s, size) for s in r.shapes]
    return rows


def _add_op_row(rows: list[Row], op: OpRecord, owner: str, depth: int) -> None:
    """Append an op row; consecutive element-wise ops of one owner merge into one row."""
    name = op.name
    shape = op.output_shapes[0] if op.output_shapes else None
    last = rows[-1] if rows else None
    if (name in ARITHMETIC_OPS and last is not None and last.is_op and last.owner == owner
            and all(n in ARITHMETIC_OPS for n in last.kind.split(','))):
        counts = Counter(last.kind.split(',')) + Counter([name])
        last.kind = ','.join(counts.elements())
        last.label = ' + '.join(f'{n} x{c}' if c > 1 else n for n, c in counts.items())
        last.shapes = [shape] if shape else last.shapes
        last.macs += op.macs or 0
        return
    rows.append(Row(label=name, kind=name, owner=owner, depth=depth,
                    shapes=[shape] if shape else [], macs=op.macs or 0, is_op=True))


def _stride(shape: tuple, size: Optional[tuple[int, int]]) -> Optional[int]:
    """Image stride of an (N, C, H, W) map: the smallest power of two ``p`` for which a
    stride-``p`` pyramid (floor or ceil sizes) has height H; else ``round(size / H)``."""
    if size is None or len(shape) != 4 or not shape[-2]:
        return None
    h, p = shape[-2], 1
    while p <= 2 * size[0]:
        if h in (size[0] // p, -(-size[0] // p)):
            return p
        p *= 2
    return round(size[0] / h)


def format_summary(rows: Sequence[Row], title: str = '') -> str:
    """A plain-text table of :func:`summarize`'s rows."""
    total = next((r.seconds for r in rows if r.label == '(total)'), None)
    header = (f'{"stage":<44} {"type":<22} {"output shape":<28} {"channels":>12} '
              f'{"stride":>9} {"params":>10} {"MMACs":>9} {"latency":>8}')
    lines = ([title] if title else []) + [header, '-' * len(header)]
    for r in rows:
        indent = '  ' * max(r.depth - 1, 0)
        label = f'{indent}{"- " if r.is_op else ""}{r.label}'
        shapes = ' '.join(str(s).replace(' ', '') for s in r.shapes) or '-'
        channels = '/'.join(str(s[1]) for s in r.shapes if len(s) > 1) or '-'
        strides = '/'.join(str(s) for s in r.strides if s is not None) or '-'
        params = f'{r.params:,}' if r.params is not None and not r.is_op else ''
        share = (f'{100 * r.seconds / total:.1f}%' if r.seconds is not None and total
                 else '')
        lines.append(f'{label:<44.44} {("op" if r.is_op else r.kind):<22.22} {shapes:<28} '
                     f'{channels:>12} {strides:>9} {params:>10} {r.macs / 1e6:>9.3f} '
                     f'{share:>8}')
    lines.append('MMACs: millions of multiply-accumulates (conv/matmul), element-wise ops, '
                 'activations, pooling windows and resizes count 1 per element. latency: '
                 'share of the total, inclusive of nested stages.')
    if any(not r.is_op and not r.shapes for r in rows):
        lines.append("output shape '-': the module ran through .forward() (mmdet detectors "
                     'call bbox_head.forward), which skips hooks: no shapes or time of its '
                     'own; its children and MACs are complete.')
    return '\n'.join(lines)
