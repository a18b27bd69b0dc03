"""LiteRT (TensorFlow Lite, ``.tflite``): the ONNX graph that
:func:`~rfcr.deploy.export.export_onnx` traces, converted by ``onnx2tf`` and LiteRT's
converter, run by the LiteRT interpreter (``ai-edge-litert``, XNNPACK on CPU).

The conversion, one path for FP32 and INT8:

1. the graph's input sizes fixed and every size computation folded into constants
   (``onnxslim``): the exact-size resizes of RFCR (``upsample_to``) read their output size
   from another tensor (``Shape -> Gather -> Concat -> Resize``), and onnx2tf's layout
   inference mistakes the channel axis of the following adds unless that size is a constant;
2. ``onnx2tf`` builds a TensorFlow (Keras) model with NHWC tensors;
3. LiteRT's converter (``tf.lite.TFLiteConverter``) turns it into the ``.tflite``, whose
   ``serving_default`` signature carries the graph's input and output names: FP32
   builtin ops, or full-integer INT8 (INT8 weights per channel and activations; float
   inputs and outputs, quantized inside) calibrated on example inputs.

onnx2tf rather than ``litert-torch``: it starts from the same ONNX graph as every other
file runtime, and it installs beside the ``deploy`` extra's torch, numpy, onnx and
TensorFlow without changing their versions (onnx2tf 1.28.8, the last release for
Python 3.11 that pins nothing); litert-torch pulls JAX, transformers and torchao and
downgrades ``typing_extensions``.

Static shapes only: the resizes' sizes become constants. The file's 4-D inputs and
outputs are NHWC; :class:`LiteRTModel` takes and returns NCHW arrays (the transposes are
part of each call, as for the other runtimes' copies).

Example:
    >>> import os, tempfile, torch
    >>> from rfcr.deploy.export import OnnxWrapper
    >>> from rfcr.deploy.litert import LiteRTModel, export_litert
    >>> conv = OnnxWrapper(torch.nn.Conv2d(3, 4, 3, padding=1))
    >>> path = os.path.join(tempfile.mkdtemp(), 'conv.tflite')
    >>> _ = export_litert(conv, (torch.rand(1, 3, 8, 6), ), path)
    >>> model = LiteRTModel(path, threads=1)
    >>> model.input_names, model.input_shapes, [o.shape for o in model(torch.rand(1, 3, 8, 6))]
    (['input0'], [(1, 3, 8, 6)], [(1, 4, 8, 6)])
"""
from __future__ import annotations

import contextlib
import os
import re
import shutil
import tempfile
from collections import Counter
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
from torch import Tensor, nn

from .export import export_onnx
from .session import ExportedModel

__all__ = ['LiteRTModel', 'export_litert', 'litert_op_counts', 'onnx_to_litert',
           'quantize_litert']

# onnx2tf runs a 3-channel image model on this file of sample images (any values do), and
# downloads it from GitHub unless it lies in the working directory.
_ONNX2TF_SAMPLES = 'calibration_image_sample_data_20x128x128x3_float32.npy'
_SIGNATURE = 'serving_default'


def _nhwc(x: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(x.transpose(0, 2, 3, 1)) if x.ndim == 4 else x


def _nchw(x: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(x.transpose(0, 3, 1, 2)) if x.ndim == 4 else x


def _static_shapes(graph, batches: Optional[Sequence[Tensor]]) -> list[str]:
    """onnxslim's ``input_shapes`` (``name:1,3,320,320``) for the graph's inputs: their own
    where static, else the calibration batches'."""
    specs = []
    for tensor in graph.input:
        dims = [d.dim_value if d.HasField('dim_value') else None
                for d in tensor.type.tensor_type.shape.dim]
        if None in dims:
            if not batches:
                raise ValueError(f'LiteRT files have static shapes: input {tensor.name!r} of the '
                                 'ONNX graph is dynamic and no calibration batch gives its size')
            dims = list(batches[0].shape)
        specs.append(f'{tensor.name}:{",".join(map(str, dims))}')
    return specs


def onnx_to_litert(onnx_path: str | os.PathLike, path: str | os.PathLike,
                   batches: Optional[Sequence[Tensor]] = None) -> None:
    """Convert the ONNX graph ``onnx_path`` to the LiteRT file ``path`` (``.tflite``): FP32,
    or with ``batches`` (NCHW inputs of the graph's single input, all of one shape) INT8
    calibrated on them. A dynamic graph is fixed at the batches' shape.

    Raises:
        ValueError: a dynamic graph without batches, batches of different shapes, or
            batches for a graph with several inputs.
        RuntimeError: onnx2tf or LiteRT's converter failed.
    """
    import onnx
    import onnx2tf
    import onnxslim
    import tensorflow as tf

    path = Path(path)
    if path.suffix != '.tflite':
        raise ValueError(f'a LiteRT model is a .tflite file, got {os.fspath(path)!r}')
    if batches is not None:
        batches = [b.detach().cpu().numpy() if isinstance(b, Tensor) else np.asarray(b)
                   for b in batches]
        if not batches or len({b.shape for b in batches}) != 1:
            raise ValueError('batches: LiteRT files have static shapes, the calibration '
                             f'batches must share one shape, got {[b.shape for b in batches]}')
    graph = onnx.load(os.fspath(onnx_path))
    if batches is not None and len(graph.graph.input) != 1:
        raise ValueError(f'batches calibrate a graph with one input; {os.fspath(onnx_path)} '
                         f'has {len(graph.graph.input)}')
    slim = onnxslim.slim(graph, input_shapes=_static_shapes(graph.graph, batches))
    input_names = [i.name for i in slim.graph.input]
    output_names = [o.name for o in slim.graph.output]
    with tempfile.TemporaryDirectory(prefix='rfcr-litert-') as tmp:
        src = os.path.join(tmp, 'model.onnx')
        onnx.save(slim, src)
        np.save(os.path.join(tmp, _ONNX2TF_SAMPLES),
                np.random.default_rng(0).random((20, 128, 128, 3), dtype=np.float32))
        try:
            with contextlib.chdir(tmp):
                # The Keras model alone: saving it as a SavedModel takes most of the time.
                model = onnx2tf.convert(input_onnx_file_path=src, output_folder_path=tmp,
                                        not_use_onnxsim=True, disable_model_save=True,
                                        non_verbose=True)
        except (Exception, SystemExit) as e:  # onnx2tf calls sys.exit on some failures
            raise RuntimeError(f'onnx2tf could not convert {os.fspath(onnx_path)}: '
                               f'{type(e).__name__}: {e}') from None

        # The file's signature: the graph's input and output names.
        @tf.function(input_signature=[tf.TensorSpec(x.shape, x.dtype, name=name)
                                      for x, name in zip(model.inputs, input_names)])
        def serve(*inputs):
            outputs = model(list(inputs))
            return dict(zip(output_names, outputs if len(output_names) > 1 else [outputs]))

        converter = tf.lite.TFLiteConverter.from_concrete_functions(
            [serve.get_concrete_function()], model)
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
        if batches is not None:
            converter.optimizations = [tf.lite.Optimize.DEFAULT]
            converter.representative_dataset = lambda: ([_nhwc(b)] for b in batches)
            converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        try:
            flatbuffer = converter.convert()
        except Exception as e:
            raise RuntimeError(f'LiteRT could not convert the TensorFlow model of '
                               f'{os.fspath(onnx_path)}: {e}') from None
        staged = os.path.join(tmp, 'model.tflite')
        Path(staged).write_bytes(flatbuffer)
        shutil.move(staged, path)


def export_litert(module: nn.Module, inputs: Sequence[Tensor], path: str | os.PathLike,
                  dynamic: bool = False, **onnx_options) -> tuple[list[str], list[str]]:
    """Export ``module`` to the LiteRT file ``path`` (``.tflite``, FP32) through the ONNX
    graph (:func:`export_onnx`, with ``onnx_options``: names, ``opset``) and
    :func:`onnx_to_litert`. Nothing is written if a step fails.

    Raises:
        ValueError: ``dynamic`` (LiteRT files are static here).

    Returns:
        The input and output names (the file's signature's).
    """
    if dynamic:
        raise ValueError('LiteRT: dynamic=True, but the exact-size resizes are folded to '
                         'the exported size: export LiteRT with static shapes')
    with tempfile.TemporaryDirectory(prefix='rfcr-litert-') as tmp:
        src = os.path.join(tmp, 'model.onnx')
        names = export_onnx(module, inputs, src, **onnx_options)
        onnx_to_litert(src, path)
    return names


def quantize_litert(fp32: str | os.PathLike, out: str | os.PathLike,
                    batches: Sequence[Tensor]) -> None:
    """Full-integer INT8 quantization (LiteRT's converter) of the ONNX graph ``fp32`` to
    ``out`` (``.tflite``), calibrated on ``batches``, at their shape."""
    onnx_to_litert(fp32, out, batches)


def _op_names() -> dict[int, str]:
    from ai_edge_litert import schema_py_generated as schema

    return {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith('_')}


def litert_op_counts(path: str | os.PathLike) -> Counter:
    """How many operators of each builtin type the LiteRT file at ``path`` holds."""
    from ai_edge_litert import schema_py_generated as schema

    model = schema.Model.GetRootAsModel(Path(path).read_bytes(), 0)
    names, counts = _op_names(), Counter()
    for g in range(model.SubgraphsLength()):
        subgraph = model.Subgraphs(g)
        for i in range(subgraph.OperatorsLength()):
            code = model.OperatorCodes(subgraph.Operators(i).OpcodeIndex())
            # Codes above 127 live in builtin_code, older ones in the deprecated byte.
            counts[names[max(code.BuiltinCode(), code.DeprecatedBuiltinCode())]] += 1
    return counts


def _index(name: str) -> int:
    found = re.search(r'(\d+)$', name)
    return int(found.group(1)) if found else 0


class LiteRTModel(ExportedModel):
    """A LiteRT file (``.tflite``, :func:`export_litert`) in the LiteRT interpreter on CPU
    (XNNPACK), FP32 or INT8 as the file holds it; ``model(*inputs)`` takes and returns NCHW
    arrays (the file's 4-D tensors are NHWC). Inputs and outputs are those of the file's
    ``serving_default`` signature (the ONNX graph's names), in the order of their numeric
    suffixes. The interpreter
    has no per-op profiler here: :meth:`profile` gives wall times and no nodes."""
    runtime = 'litert'

    def __init__(self, path: str | os.PathLike, threads: Optional[int] = None,
                 profile: bool = False) -> None:
        from ai_edge_litert.interpreter import Interpreter

        super().__init__(path, threads, profile)
        self._interpreter = Interpreter(model_path=self.path, num_threads=threads)
        signatures = self._interpreter.get_signature_list()
        if _SIGNATURE not in signatures:
            raise ValueError(f'{self.path}: no {_SIGNATURE!r} signature (its signatures: '
                             f'{sorted(signatures)}); export it with export_litert')
        runner = self._interpreter.get_signature_runner(_SIGNATURE)
        inputs, outputs = runner.get_input_details(), runner.get_output_details()
        self.input_names = sorted(signatures[_SIGNATURE]['inputs'], key=_index)
        self.output_names = sorted(signatures[_SIGNATURE]['outputs'], key=_index)
        self._inputs = [inputs[n]['index'] for n in self.input_names]
        self._outputs = [outputs[n]['index'] for n in self.output_names]
        shapes = [tuple(int(d) for d in inputs[n]['shape']) for n in self.input_names]
        self.input_shapes = [(s[0], s[3], s[1], s[2]) if len(s) == 4 else s for s in shapes]
        del runner  # it holds views of the interpreter's buffers, which allocating would move
        self._interpreter.allocate_tensors()

    def run(self, arrays: Sequence[np.ndarray]) -> list[np.ndarray]:
        for index, x in zip(self._inputs, arrays):
            self._interpreter.set_tensor(index, _nhwc(np.asarray(x, dtype=np.float32)))
        self._interpreter.invoke()
        return [_nchw(self._interpreter.get_tensor(i)) for i in self._outputs]
