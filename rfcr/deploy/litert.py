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

Steps 2 and 3 run in a process of their own (:mod:`rfcr.deploy.litert_convert`): TensorFlow
imported beside torch's inductor crashed the process. Static shapes only: the resizes'
sizes become constants. The file's 4-D inputs and
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

import json
import os
import re
import shutil
import subprocess
import sys
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

_CONVERTER = str(Path(__file__).with_name('litert_convert.py'))  # run as a script
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


def _variable_topk_k(graph) -> None:
    """Feed each ``TopK``'s constant ``k`` through an ``Identity``: onnx2tf 1.28.8 reads a
    constant ``k`` with ``int()``, which NumPy 2 refuses for ONNX's 1-element ``k`` (the
    end-to-end graphs' top-k); a computed ``k`` takes its TensorFlow path."""
    from onnx import helper

    constants = {i.name for i in graph.initializer}
    for node in [n for n in graph.node if n.op_type == 'TopK' and n.input[1] in constants]:
        k = node.input[1]
        node.input[1] = f'{node.name}/k'
        graph.node.insert(list(graph.node).index(node),
                          helper.make_node('Identity', [k], [node.input[1]],
                                           name=f'{node.name}/k'))


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
    import onnxslim

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
    _variable_topk_k(slim.graph)
    names = dict(inputs=[i.name for i in slim.graph.input],
                 outputs=[o.name for o in slim.graph.output])
    with tempfile.TemporaryDirectory(prefix='rfcr-litert-') as tmp:
        onnx.save(slim, os.path.join(tmp, 'model.onnx'))
        Path(tmp, 'names.json').write_text(json.dumps(names))
        if batches is not None:
            np.save(os.path.join(tmp, 'calib.npy'), np.stack(batches).astype(np.float32))
        # TensorFlow in a process of its own (rfcr.deploy.litert_convert says why).
        done = subprocess.run([sys.executable, _CONVERTER, tmp], capture_output=True,
                              text=True)
        if done.returncode != 0 or not os.path.isfile(os.path.join(tmp, 'model.tflite')):
            lines = (done.stderr.strip() or done.stdout.strip() or 'no output').splitlines()
            raise RuntimeError(f'LiteRT conversion of {os.fspath(onnx_path)} failed '
                               f'(exit {done.returncode}): {lines[-1]}')
        shutil.move(os.path.join(tmp, 'model.tflite'), path)


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
        self._dtypes = [inputs[n]['dtype'] for n in self.input_names]  # uint8 end to end
        self._outputs = [outputs[n]['index'] for n in self.output_names]
        shapes = [tuple(int(d) for d in inputs[n]['shape']) for n in self.input_names]
        self.input_shapes = [(s[0], s[3], s[1], s[2]) if len(s) == 4 else s for s in shapes]
        del runner  # it holds views of the interpreter's buffers, which allocating would move
        self._interpreter.allocate_tensors()

    def run(self, arrays: Sequence[np.ndarray]) -> list[np.ndarray]:
        for index, dtype, x in zip(self._inputs, self._dtypes, arrays):
            self._interpreter.set_tensor(index, _nhwc(np.asarray(x, dtype=dtype)))
        self._interpreter.invoke()
        return [_nchw(self._interpreter.get_tensor(i)) for i in self._outputs]
