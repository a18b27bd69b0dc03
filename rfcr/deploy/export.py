"""ONNX and OpenVINO export of a detector's raw head outputs (or of its neck alone); the
runtimes that run the files, and check them against PyTorch, are
:mod:`rfcr.deploy.runtime`'s.

The graph is traced with torch's TorchScript-based exporter (``dynamo=False``): the
exact-size resizes (:func:`rfcr.models.layers.max_pool_to`, ``upsample_to``) choose
ceil- or floor-mode pooling from Python comparisons of shapes, which ``torch.export``
turns into guards that a dynamic height and width cannot satisfy. The tracer records
the branch taken and keeps every size read from a tensor dynamic. A dynamic graph is
therefore traced at an input whose every pyramid level has an odd size
(:func:`odd_pyramid_size`): there, each shape-dependent choice takes its ceil path,
which is exact for every input size of a pyramid whose stride-2 stages output
``ceil(n / 2)`` (padded 3x3 stride-2 convs: MobileNetV2, ResNet, ...).
:func:`~rfcr.deploy.runtime.verify_exported` checks the graph at other sizes, odd ones
included.
"""
from __future__ import annotations

import copy
import os
import shutil
import tempfile
import warnings
from collections import Counter
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import torch
from mmcv.cnn.bricks.conv2d_adaptive_padding import Conv2dAdaptivePadding
from torch import Tensor, nn

from .conv import plain_conv

__all__ = ['DEFAULT_OPSET', 'OnnxWrapper', 'detector_wrapper', 'export_onnx', 'export_openvino',
           'flatten_outputs', 'neck_wrapper', 'odd_pyramid_size', 'onnx_op_counts',
           'openvino_op_counts', 'save_ir', 'simplify_onnx', 'tf_same_traceable']

DEFAULT_OPSET = 17


def flatten_outputs(outputs: Any) -> list[Tensor]:
    if torch.is_tensor(outputs):
        return [outputs]
    if isinstance(outputs, (tuple, list)):
        return [t for o in outputs for t in flatten_outputs(o)]
    raise TypeError(f'expected tensors or (nested) tuples / lists of tensors, '
                    f'got {type(outputs).__name__}')


class OnnxWrapper(nn.Module):
    """``module`` as ONNX sees it: tensors in (positional), a flat tuple of tensors out.

    Args:
        module: The model or part.
        call: How to call ``module`` on the tuple of input tensors; by default
            ``module(*inputs)``. Nested tuples and lists in what it returns are flattened.
    """

    def __init__(self, module: nn.Module,
                 call: Optional[Callable[[nn.Module, tuple[Tensor, ...]], Any]] = None
                 ) -> None:
        super().__init__()
        self.module = module
        self.call = call

    def forward(self, *inputs: Tensor) -> tuple[Tensor, ...]:
        out = self.call(self.module, inputs) if self.call else self.module(*inputs)
        return tuple(flatten_outputs(out))


def _detector_tensor_mode(detector: nn.Module, inputs: tuple[Tensor, ...]) -> Any:
    return detector(inputs[0], mode='tensor')


def _neck_on_pyramid(neck: nn.Module, inputs: tuple[Tensor, ...]) -> Any:
    return neck(list(inputs))


def detector_wrapper(detector: nn.Module) -> OnnxWrapper:
    """An mmdet detector's raw head outputs (``detector(x, mode='tensor')``, no decoding,
    no NMS) for a preprocessed ``(N, 3, H, W)`` image batch, flattened: for YOLO-ReT the
    prediction maps at strides 32, 16 and 8."""
    return OnnxWrapper(detector, _detector_tensor_mode)


def neck_wrapper(neck: nn.Module) -> OnnxWrapper:
    """A neck (RFCR, or a list neck such as RFCR + YOLOReTNeck) on a pyramid of feature
    maps passed as separate inputs."""
    return OnnxWrapper(neck, _neck_on_pyramid)


def odd_pyramid_size(size: int, max_stride: int = 32) -> int:
    """The smallest ``n >= size`` whose feature maps at strides 2 .. ``max_stride / 2``
    all have odd sizes (``n = 1 mod max_stride``), for a stride pyramid of padded 3x3
    stride-2 convs (``ceil(n / 2)`` per stage).

    Example:
        >>> odd_pyramid_size(320), odd_pyramid_size(321), odd_pyramid_size(96)
        (321, 321, 97)
    """
    if isinstance(size, bool) or not isinstance(size, int) or size <= 0:
        raise ValueError(f'size must be a positive int, got {size!r}')
    return size + (1 - size) % max_stride


def _names(prefix: str, count: int) -> list[str]:
    return [f'{prefix}{i}' for i in range(count)]


def _dynamic_axes(names: Sequence[str], tensors: Sequence[Tensor]) -> dict[str, dict[int, str]]:
    axes = {}
    for name, t in zip(names, tensors):
        axes[name] = {0: 'batch'}
        if t.dim() == 4:
            axes[name].update({2: f'{name}_height', 3: f'{name}_width'})
    return axes


def tf_same_traceable(module: nn.Module) -> nn.Module:
    """``module``, or a copy of it in which every mmcv ``Conv2dAdaptivePadding`` (TensorFlow
    "SAME") is the same padding and conv as :class:`~rfcr.deploy.conv.TFSamePad` and a
    plain conv: the same function, whose pads a dynamic ONNX graph computes per input size
    (mmcv's forward computes them in Python, which tracing freezes at the traced size)."""
    if not any(type(m) is Conv2dAdaptivePadding for m in module.modules()):
        return module
    module = copy.deepcopy(module)
    for parent in list(module.modules()):
        for name, child in list(parent.named_children()):
            if type(child) is Conv2dAdaptivePadding:
                conv, padding = plain_conv(child)
                setattr(parent, name, conv if padding is None else nn.Sequential(padding, conv))
    return module


def export_onnx(module: nn.Module,
                inputs: Sequence[Tensor],
                path: str | os.PathLike,
                *,
                input_names: Optional[Sequence[str]] = None,
                output_names: Optional[Sequence[str]] = None,
                dynamic: bool = False,
                opset: int = DEFAULT_OPSET,
                simplify: bool = True) -> tuple[list[str], list[str]]:
    """Export ``module`` (called as ``module(*inputs)``, returning a flat tuple of tensors,
    e.g. an :class:`OnnxWrapper`) to ``path`` in eval mode, simplify the graph with
    onnxslim and check the file with ``onnx.checker``.

    The tracer records every size the exact-size pads and resizes read from a tensor as
    arithmetic (``Shape``, ``Gather``, ``Cast``, ``Constant``, ``Identity`` ...): 802 nodes
    for the 76 convs of a folded YOLO-ReT-M0.75. onnxslim folds what the input shapes fix
    into constants and fuses constant pads into the convs: a static graph is then its
    compute ops alone (208 nodes there), a dynamic one keeps only the size arithmetic that
    depends on the dynamic axes (394 nodes). Edge converters (pnnx, onnx2tf) need the
    folded sizes. Simplifying is exact (graph rewriting, no numerics change); tests compare
    the simplified graph with PyTorch.

    Args:
        module: The module; it is put in eval mode and stays there. TensorFlow-"SAME"
            convs are exported through :func:`tf_same_traceable`.
        inputs: Example inputs. With ``dynamic``, trace at sizes that take the general
            path through shape-dependent code (see :func:`odd_pyramid_size`).
        path: The ``.onnx`` file to write.
        input_names: Graph input names; ``input0``, ``input1``, ... by default.
        output_names: Graph output names; ``output0``, ... by default.
        dynamic: Make the batch (axis 0), height and width (axes 2, 3 of 4-D tensors) of
            every input and output dynamic.
        opset: ONNX opset, at least 17.
        simplify: Run onnxslim on the traced graph (``False``: the graph as traced).

    Returns:
        The input and output names.
    """
    import onnx

    if isinstance(opset, bool) or not isinstance(opset, int) or opset < 17:
        raise ValueError(f'opset must be an int >= 17, got {opset!r}')
    inputs = tuple(inputs)
    module.eval()
    module = tf_same_traceable(module)
    with torch.no_grad():
        outputs = module(*inputs)
    input_names = list(input_names or _names('input', len(inputs)))
    output_names = list(output_names or _names('output', len(outputs)))
    if len(input_names) != len(inputs) or len(output_names) != len(outputs):
        raise ValueError(f'got {len(input_names)} input_names and {len(output_names)} '
                         f'output_names for a module with {len(inputs)} inputs and '
                         f'{len(outputs)} outputs')
    dynamic_axes = None
    if dynamic:
        dynamic_axes = {**_dynamic_axes(input_names, inputs),
                        **_dynamic_axes(output_names, outputs)}
    with warnings.catch_warnings(), torch.no_grad():
        # Input validation reads shapes in Python; verify_exported checks the result instead.
        warnings.filterwarnings('ignore', category=torch.jit.TracerWarning)
        warnings.filterwarnings('ignore', message='.*legacy TorchScript-based ONNX export')
        torch.onnx.export(module, inputs, os.fspath(path), dynamo=False, opset_version=opset,
                          input_names=input_names, output_names=output_names,
                          dynamic_axes=dynamic_axes, do_constant_folding=True)
    if simplify:
        simplify_onnx(path)
    onnx.checker.check_model(os.fspath(path))
    return input_names, output_names


def simplify_onnx(path: str | os.PathLike) -> None:
    """Simplify the ONNX graph ``path`` in place with onnxslim (constant folding, shape
    arithmetic of fixed sizes folded, pads fused into convs, dead nodes removed), keeping
    its input and output names, dynamic axes and metadata."""
    import onnx
    import onnxslim

    model = onnx.load(os.fspath(path))
    slim = onnxslim.slim(model)
    names = ([i.name for i in model.graph.input], [o.name for o in model.graph.output])
    if names != ([i.name for i in slim.graph.input], [o.name for o in slim.graph.output]):
        raise RuntimeError(f'onnxslim renamed the inputs or outputs of {os.fspath(path)}')
    del slim.metadata_props[:]
    slim.metadata_props.extend(model.metadata_props)
    onnx.save(slim, os.fspath(path))


def export_openvino(module: nn.Module,
                    inputs: Sequence[Tensor],
                    path: str | os.PathLike,
                    **onnx_options) -> tuple[list[str], list[str]]:
    """Export ``module`` to an OpenVINO IR: ``path`` (``.xml``) and its weights beside it
    (``.bin``), FP32.

    The graph goes through ONNX (:func:`export_onnx`, with ``onnx_options``: names,
    ``dynamic``, ``opset``), which OpenVINO's ONNX frontend reads: the same traced graph
    that ONNX Runtime runs, with the same handling of the exact-size resizes. Nothing is
    written if a step fails.

    Returns:
        The input and output names.
    """
    import openvino as ov

    path = Path(path)
    if path.suffix != '.xml':
        raise ValueError(f'an OpenVINO IR is a .xml file (weights in .bin beside it), got '
                         f'{os.fspath(path)!r}')
    with tempfile.TemporaryDirectory() as tmp:
        onnx_path = os.path.join(tmp, 'model.onnx')
        names = export_onnx(module, inputs, onnx_path, **onnx_options)
        # FP32 weights: save_model would store FP16 ones by default.
        ov.save_model(ov.convert_model(onnx_path), os.path.join(tmp, 'model.xml'),
                      compress_to_fp16=False)
        save_ir(os.path.join(tmp, 'model.xml'), path)
    return names


def save_ir(source: str | os.PathLike, path: str | os.PathLike) -> None:
    """Move the OpenVINO IR ``source`` (``.xml`` and its ``.bin``) to ``path``; the
    ``.xml``, which names its ``.bin`` by its own name, goes last."""
    source, path = Path(source), Path(path)
    shutil.move(source.with_suffix('.bin'), path.with_suffix('.bin'))
    shutil.move(source, path)


def onnx_op_counts(path: str | os.PathLike) -> Counter:
    """How many nodes of each op type the graph at ``path`` holds."""
    import onnx

    return Counter(n.op_type for n in onnx.load(os.fspath(path)).graph.node)


def openvino_op_counts(path: str | os.PathLike) -> Counter:
    """How many operations of each type the OpenVINO IR at ``path`` holds (parameters,
    constants and results left out)."""
    import openvino as ov

    skip = {'Parameter', 'Constant', 'Result'}
    return Counter(op.get_type_name()
                   for op in ov.Core().read_model(os.fspath(path)).get_ordered_ops()
                   if op.get_type_name() not in skip)
