"""Edge runtimes: ncnn and MNN, each running the ONNX graph that
:func:`~rfcr.deploy.export.export_onnx` traces, converted by the runtime's own tool; and
TensorRT, built from the same graph where a CUDA GPU is present.

- ncnn: ``pnnx`` converts the graph to ``X.param`` + ``X.bin`` (FP32 weights). Static
  shapes, batch 1: pnnx freezes the exact-size resizes (``upsample_to``) at the exported
  size, and an ncnn blob has no batch axis. The exported input sizes are written into the
  param's ``Input`` layers (``0=w 1=h 2=c``, ncnn's shape hint), where the runner reads them
  back to check its inputs.
- MNN: MNN's converter (the ``_tools`` extension that the ``mnnconvert`` script wraps)
  writes ``X.mnn``; dynamic batch, height and width stay dynamic. INT8: MNN's
  post-training quantization (``mnnquant``, :func:`quantize_mnn`), static shapes. The
  ``mnnconvert`` and ``mnnquant`` scripts, and anything importing ``MNN.tools``,
  pip-install an upload client and send a usage log: this module calls the extension
  itself.
- TensorRT: an engine (``X.engine``) built for the GPU it runs on, FP32 (TF32 off).

ncnn and MNN run on CPU in FP32 (ncnn's FP16 / BF16 storage and arithmetic off, MNN's
``precision='high'``), on ``threads`` threads.

Example:
    >>> import os, tempfile, torch
    >>> from rfcr.deploy.edge import MnnModel, export_mnn
    >>> from rfcr.deploy.export import OnnxWrapper
    >>> conv = OnnxWrapper(torch.nn.Conv2d(3, 4, 1))
    >>> path = os.path.join(tempfile.mkdtemp(), 'conv.mnn')
    >>> _ = export_mnn(conv, (torch.rand(1, 3, 8, 8), ), path, dynamic=True)
    >>> model = MnnModel(path, threads=1)
    >>> model.input_names, [o.shape for o in model(torch.rand(2, 3, 9, 7))]
    (['input0'], [(2, 4, 9, 7)])
"""
from __future__ import annotations

import json
import os
import re
import shutil
import struct
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

__all__ = ['MnnModel', 'NcnnModel', 'TensorRTModel', 'cuda_available', 'export_mnn',
           'export_ncnn', 'export_tensorrt', 'mnn_op_counts', 'ncnn_op_counts',
           'quantize_mnn', 'tensorrt_op_counts']


def _suffix(path: str | os.PathLike, suffix: str, kind: str) -> Path:
    path = Path(path)
    if path.suffix != suffix:
        raise ValueError(f'{kind} is a {suffix} file, got {os.fspath(path)!r}')
    return path


def export_ncnn(module: nn.Module, inputs: Sequence[Tensor], path: str | os.PathLike,
                dynamic: bool = False, **onnx_options) -> tuple[list[str], list[str]]:
    """Export ``module`` to ncnn: ``path`` (``.param``) and its weights beside it
    (``.bin``, FP32), converted by ``pnnx`` from the ONNX graph (:func:`export_onnx`, with
    ``onnx_options``: names, ``opset``). Nothing is written if a step fails.

    Raises:
        ValueError: ``dynamic`` (ncnn graphs are static here), or an input's batch is not 1.
        RuntimeError: pnnx failed.

    Returns:
        The ONNX graph's input and output names (ncnn calls them ``in0``, ``out0``, ...).
    """
    import pnnx

    path = _suffix(path, '.param', 'an ncnn graph (weights in .bin beside it)')
    if dynamic:
        raise ValueError('ncnn: dynamic=True, but pnnx freezes the exact-size resizes at the '
                         'exported size: export ncnn with static shapes')
    inputs = tuple(inputs)
    if any(x.dim() != 4 or x.shape[0] != 1 for x in inputs):
        raise ValueError('ncnn runs one (C, H, W) image per input: inputs must be 4-D with '
                         f'batch 1, got {[tuple(x.shape) for x in inputs]}')
    with tempfile.TemporaryDirectory() as tmp:
        src, stem = os.path.join(tmp, 'model.onnx'), os.path.join(tmp, 'model')
        names = export_onnx(module, inputs, src, **onnx_options)
        shapes = ','.join('[' + ','.join(map(str, x.shape)) + ']' for x in inputs)
        # Every output named: pnnx would otherwise write its own files beside the graph.
        outs = dict(ncnnparam='.param', ncnnbin='.bin', ncnnpy='_ncnn.py',
                    pnnxparam='.pnnx.param', pnnxbin='.pnnx.bin', pnnxpy='_pnnx.py',
                    pnnxonnx='.pnnx.onnx')
        done = subprocess.run([pnnx.EXEC_PATH, src, f'inputshape={shapes}', 'fp16=0']
                              + [f'{k}={stem}{v}' for k, v in outs.items()],
                              cwd=tmp, capture_output=True, text=True)
        if done.returncode != 0 or not os.path.isfile(stem + '.param'):
            raise RuntimeError(f'pnnx failed (exit {done.returncode}): '
                               f'{(done.stderr or done.stdout).strip()[-2000:]}')
        param = Path(stem + '.param').read_text()
        for i, x in enumerate(inputs):  # the exported size as the Input layer's shape hint
            _, c, h, w = x.shape
            param = re.sub(rf'^(Input\s+\S+\s+0 1 in{i})$', rf'\1 0={w} 1={h} 2={c}', param,
                           count=1, flags=re.M)
        Path(stem + '.param').write_text(param)
        shutil.move(stem + '.bin', path.with_suffix('.bin'))
        shutil.move(stem + '.param', path)
    return names


def _ncnn_layers(path: str | os.PathLike) -> list[tuple[str, str]]:
    """``(layer type, the rest of its line)`` per layer of an ncnn ``.param``."""
    lines = Path(path).read_text().splitlines()[2:]  # magic number; layer and blob counts
    return [(line.split()[0], line) for line in lines if line.strip()]


def ncnn_op_counts(path: str | os.PathLike) -> Counter:
    """How many layers of each type the ncnn graph at ``path`` holds (inputs and the
    ``Split`` layers that fan a blob out left out)."""
    return Counter(kind for kind, _ in _ncnn_layers(path) if kind not in ('Input', 'Split'))


def _by_index(names: Sequence[str]) -> list[str]:
    return sorted(names, key=lambda n: int(re.sub(r'\D', '', n) or 0))


class NcnnModel(ExportedModel):
    """An ncnn graph (``.param`` + ``.bin``) on CPU, FP32, static shapes and batch 1
    (:func:`export_ncnn`); ``model(*inputs)`` takes and returns ``(1, C, H, W)`` arrays.
    ncnn has no profiler: :meth:`profile` gives wall times and no nodes."""
    runtime = 'ncnn'

    def __init__(self, path: str | os.PathLike, threads: Optional[int] = None,
                 profile: bool = False) -> None:
        import ncnn

        super().__init__(path, threads, profile)
        self._net = ncnn.Net()
        opt = self._net.opt
        opt.use_vulkan_compute = False
        opt.use_fp16_storage = opt.use_fp16_arithmetic = opt.use_fp16_packed = False
        opt.use_bf16_storage = False
        if threads is not None:
            opt.num_threads = threads
        weights = Path(self.path).with_suffix('.bin')
        if self._net.load_param(self.path) != 0 or self._net.load_model(os.fspath(weights)):
            raise RuntimeError(f'ncnn could not load {self.path} and {os.fspath(weights)}')
        self.input_names = _by_index(self._net.input_names())
        self.output_names = _by_index(self._net.output_names())
        hints = {}
        for kind, line in _ncnn_layers(self.path):
            if kind == 'Input':
                fields = dict(f.split('=') for f in line.split()[5:])
                hints[line.split()[4]] = tuple(int(fields.get(k, -1)) for k in '210')
        self.input_shapes = [(1, ) + tuple(d if d > 0 else None for d in hints[n])
                             for n in self.input_names]

    def run(self, arrays: Sequence[np.ndarray]) -> list[np.ndarray]:
        import ncnn

        extractor = self._net.create_extractor()
        for name, x in zip(self.input_names, arrays):
            extractor.input(name, ncnn.Mat(np.ascontiguousarray(x[0], dtype=np.float32)))
        outputs = []
        for name in self.output_names:
            ret, mat = extractor.extract(name)
            if ret != 0:
                raise RuntimeError(f'ncnn: extracting {name!r} from {self.path} failed ({ret})')
            outputs.append(np.array(mat)[None])
        return outputs


def _mnn_convert(onnx_path: str, out: str) -> None:
    import _tools  # MNN's converter extension, without the mnnconvert script's upload

    _tools.mnnconvert(['mnnconvert', '-f', 'ONNX', '--modelFile', onnx_path, '--MNNModel', out,
                       '--bizCode', 'rfcr'])
    if not os.path.isfile(out):  # it reports success whatever happened
        raise RuntimeError(f'MNN could not convert the ONNX graph {onnx_path} (see its log)')


def export_mnn(module: nn.Module, inputs: Sequence[Tensor], path: str | os.PathLike,
               **onnx_options) -> tuple[list[str], list[str]]:
    """Export ``module`` to an MNN model ``path`` (``.mnn``, FP32), converted by MNN from
    the ONNX graph (:func:`export_onnx`, with ``onnx_options``: names, ``dynamic``,
    ``opset``). Nothing is written if a step fails.

    Returns:
        The input and output names.
    """
    path = _suffix(path, '.mnn', 'an MNN model')
    with tempfile.TemporaryDirectory() as tmp:
        src, staged = os.path.join(tmp, 'model.onnx'), os.path.join(tmp, 'model.mnn')
        names = export_onnx(module, inputs, src, **onnx_options)
        _mnn_convert(src, staged)
        shutil.move(staged, path)
    return names


def _mnn_int8_tensors(path: str | os.PathLike) -> set[str]:
    """The tensors an MNN model holds in INT8: those with a ``quantInfo`` (what mnnquant
    writes) in the model's ``extraTensorDescribe``. MNN's Python package does not read it,
    so it is read from the flatbuffer (MNN's schema/default/MNN.fbs: ``Net`` fields 1
    ``extraTensorDescribe`` and 7 ``tensorName``, ``TensorDescribe`` fields 1 ``index`` and
    4 ``quantInfo``)."""
    buf = Path(path).read_bytes()

    def u32(pos: int) -> int:
        return struct.unpack_from('<I', buf, pos)[0]

    def field(table: int, i: int) -> int:  # the field's position, 0 if absent
        vtable = table - struct.unpack_from('<i', buf, table)[0]
        slot = 4 + 2 * i
        if slot >= struct.unpack_from('<H', buf, vtable)[0]:
            return 0
        offset = struct.unpack_from('<H', buf, vtable + slot)[0]
        return table + offset if offset else 0

    def vector(pos: int) -> list[int]:  # positions of a vector's tables or strings
        if not pos:
            return []
        start = pos + u32(pos)
        return [start + 4 + 4 * k + u32(start + 4 + 4 * k) for k in range(u32(start))]

    net = u32(0)
    names = [buf[p + 4:p + 4 + u32(p)].decode() for p in vector(field(net, 7))]
    int8 = set()
    for describe in vector(field(net, 1)):
        if field(describe, 4):
            index = field(describe, 1)  # absent: the default, 0
            int8.add(names[struct.unpack_from('<i', buf, index)[0] if index else 0])
    return int8


def mnn_op_counts(path: str | os.PathLike) -> Counter:
    """How many operations of each type the MNN model at ``path`` holds (inputs and
    constants left out); an operation writing an INT8 tensor (:func:`quantize_mnn`) is
    counted as ``'<type> (INT8)'``."""
    from MNN import expr

    int8 = _mnn_int8_tensors(path)
    return Counter(v.op_type + (' (INT8)' if v.name in int8 else '')
                   for v in expr.load_as_list(os.fspath(path))
                   if v.op_type not in ('Input', 'Const'))


# mnnquant in a process of its own: it aborts or crashes the process on some graphs.
_MNNQUANT = 'import sys, _tools; _tools.mnnquant(["mnnquant"] + sys.argv[1:])'


def _max_pools_as_reduce_max(graph) -> list[str]:
    """Rewrite, in place, each ``MaxPool`` of the static-shape ONNX ``graph`` whose windows
    tile its input (kernel = stride, no padding or dilation; ``ceil_mode`` or not) as the
    same maximum without a pooling op: ``Slice`` (floor: the rows and columns no window
    covers) or edge ``Pad`` (ceil: the last window's missing pixels repeat its edge, which
    leaves its maximum unchanged), ``Reshape`` to ``(N, C, H/k, k, W/k, k)`` and
    ``ReduceMax`` over the two ``k`` axes: equal outputs, bit for bit.

    Why: MNN's x86 CPU backend (SSE / AVX2 / AVX-512 builds; MNN 3.6.1) stores INT8
    tensors with an offset of 128 (as unsigned bytes), and its INT8 max-pool kernel
    compares those bytes as signed: any window holding values on both sides of the
    tensor's zero point returns the largest value below it. MNN runs a pool in INT8
    whenever its input and output have the same scale, as after a ReLU6 conv whose
    range is exactly 0..6 or a pool feeding a ``Concat`` (mnnquant's ``EMA`` path gives
    no option to keep an op in FP32). ``ReduceMax`` has no INT8 kernel: MNN dequantizes,
    takes the maximum in FP32 and quantizes again at the same scale, which is exactly
    what a correct INT8 max-pool gives. Other max-pools are left as they are.

    Returns:
        The names (or output names) of the rewritten nodes.
    """
    import onnx
    from onnx import helper, numpy_helper

    import onnxruntime

    # The pools' input shapes, from ONNX Runtime on a zero input (rfcr's graphs compute
    # resize sizes with Shape ops, which ONNX's static shape inference leaves unknown).
    pooled = [n.input[0] for n in graph.graph.node if n.op_type == 'MaxPool' and n.input]
    if not pooled:
        return []
    probe = onnx.ModelProto()
    probe.CopyFrom(graph)
    outputs = {o.name for o in probe.graph.output}
    probe.graph.output.extend(onnx.ValueInfoProto(name=name) for name in dict.fromkeys(pooled)
                              if name not in outputs)
    session = onnxruntime.InferenceSession(probe.SerializeToString(),
                                           providers=['CPUExecutionProvider'])
    (graph_input, ) = session.get_inputs()
    zeros = np.zeros(graph_input.shape, np.float32)
    shapes = {name: list(value.shape) for name, value in
              zip(pooled, session.run(pooled, {graph_input.name: zeros}))}
    opset = next(o.version for o in graph.opset_import if o.domain in ('', 'ai.onnx'))
    nodes, rewritten = [], []

    def const(name: str, values) -> str:
        graph.graph.initializer.append(numpy_helper.from_array(np.array(values, np.int64),
                                                               name))
        return name

    for node in graph.graph.node:
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        kernel = list(attrs.get('kernel_shape', ()))
        shape = shapes.get(node.input[0]) if node.input else None
        if (node.op_type != 'MaxPool' or node.domain not in ('', 'ai.onnx')
                or len(node.output) != 1 or shape is None or len(shape) != 4
                or len(kernel) != 2 or list(attrs.get('strides', (1, 1))) != kernel
                or any(attrs.get('pads', ())) or any(d != 1 for d in attrs.get('dilations', ()))
                or attrs.get('auto_pad', b'NOTSET') not in (b'NOTSET', 'NOTSET')
                or attrs.get('storage_order', 0)):
            nodes.append(node)
            continue
        n, c, h, w = shape
        (kh, kw), ceil = kernel, attrs.get('ceil_mode', 0)
        oh, ow = (-(-h // kh), -(-w // kw)) if ceil else (h // kh, w // kw)
        x, base = node.input[0], f'{node.name or node.output[0]}/as_reduce_max'
        if oh * kh < h or ow * kw < w:  # floor mode: drop what no window covers
            nodes.append(helper.make_node(
                'Slice', [x, const(f'{base}/starts', [0, 0]),
                          const(f'{base}/ends', [min(h, oh * kh), min(w, ow * kw)]),
                          const(f'{base}/axes', [2, 3])], [f'{base}/cropped'],
                name=f'{base}/crop'))
            x = f'{base}/cropped'
        if oh * kh > h or ow * kw > w:  # ceil mode: complete the last windows
            pads = [0, 0, 0, 0, 0, 0, max(oh * kh - h, 0), max(ow * kw - w, 0)]
            nodes.append(helper.make_node('Pad', [x, const(f'{base}/pads', pads)],
                                          [f'{base}/padded'], name=f'{base}/pad',
                                          mode='edge'))
            x = f'{base}/padded'
        nodes.append(helper.make_node('Reshape', [x, const(f'{base}/shape',
                                                         [n, c, oh, kh, ow, kw])],
                                      [f'{base}/windows'], name=f'{base}/reshape'))
        if opset >= 18:
            nodes.append(helper.make_node('ReduceMax', [f'{base}/windows',
                                                        const(f'{base}/axes35', [3, 5])],
                                          list(node.output), name=base, keepdims=0))
        else:
            nodes.append(helper.make_node('ReduceMax', [f'{base}/windows'], list(node.output),
                                          name=base, axes=[3, 5], keepdims=0))
        rewritten.append(node.name or node.output[0])
    del graph.graph.node[:]
    graph.graph.node.extend(nodes)
    return rewritten


def quantize_mnn(fp32: str | os.PathLike, out: str | os.PathLike,
                 batches: Sequence[Tensor]) -> None:
    """INT8 post-training quantization of the ONNX graph ``fp32`` by MNN (``mnnquant``:
    INT8 weights per output channel, ``MAX_ABS``; INT8 features, ``EMA`` ranges; no INT8
    Winograd) to the
    MNN model ``out`` (``.mnn``), calibrated on ``batches`` (3-channel NCHW inputs of the
    graph's single input). Nothing is written if a step fails.

    The graph is fixed at the first batch's height and width (batch 1) first: mnnquant
    fails on dynamic shapes (and its ``KL`` method crashes on rfcr's detectors). Its
    tiling max-pools (kernel = stride: all of rfcr's) become ``Reshape`` + ``ReduceMax``
    (:func:`_max_pools_as_reduce_max`), the same maximum, which MNN takes in FP32 between
    INT8 tensors: MNN's x86 INT8 max-pool kernel is wrong (the demo detector's INT8 file
    scored mAP@0.5 0.354 with it, 0.779 without, the checkpoint 0.780). Convolutions are
    all INT8 either way. It
    calibrates on image files through its own ``(pixel - mean) * normal``: each image of
    the batches is written as an 8-bit PNG, mapped per channel from the batches' range onto
    0..255, with the ``mean`` and ``normal`` that map it back (exact for images a
    data preprocessor normalized from 8-bit pixels that span 0..255, otherwise within half
    of 1/255 of the range); MNN resizes images of another size to the graph's.

    Raises:
        ValueError: no batches, batches that are not 3-channel images, or a graph with
            several inputs or one that does not take them.
        RuntimeError: MNN could not convert or quantize the graph.
    """
    import cv2
    import onnx

    out = _suffix(out, '.mnn', 'an MNN model')
    images = [image for b in batches for image in np.asarray(b, dtype=np.float32)]
    if not images or any(image.ndim != 3 or image.shape[0] != 3 for image in images):
        raise ValueError('batches: mnnquant calibrates on 3-channel images, batches must be '
                         f'(N, 3, H, W), got {[tuple(np.shape(b)) for b in batches]}')
    graph = onnx.load(os.fspath(fp32))
    if len(graph.graph.input) != 1:
        raise ValueError(f'batches calibrate a graph with one input; {os.fspath(fp32)} has '
                         f'{len(graph.graph.input)}')
    _, height, width = images[0].shape
    graph_input = graph.graph.input[0]
    dims = graph_input.type.tensor_type.shape.dim
    if len(dims) != 4 or any(d.HasField('dim_value') and d.dim_value != n
                             for d, n in zip(dims, (1, 3, height, width))):
        shape = 'x'.join(str(d.dim_value) if d.HasField('dim_value') else '?' for d in dims)
        raise ValueError(f'input {graph_input.name!r} of {os.fspath(fp32)} has shape {shape}, '
                         f'the batches 1x3x{height}x{width}')
    for dim, size in zip(dims, (1, 3, height, width)):
        dim.dim_value = size
    _max_pools_as_reduce_max(graph)  # MNN's x86 INT8 max-pool is wrong (see there)
    low = np.min([image.min(axis=(1, 2)) for image in images], axis=0)
    step = np.maximum(np.max([image.max(axis=(1, 2)) for image in images], axis=0) - low,
                      1e-6) / 255
    with tempfile.TemporaryDirectory(prefix='rfcr-mnnquant-') as tmp:
        static, src = os.path.join(tmp, 'fp32.onnx'), os.path.join(tmp, 'fp32.mnn')
        onnx.save(graph, static)
        _mnn_convert(static, src)
        folder = os.path.join(tmp, 'images')
        os.mkdir(folder)
        for i, image in enumerate(images):
            pixels = np.clip(np.rint((image - low[:, None, None]) / step[:, None, None]), 0, 255)
            # Channel 0 as red ('format': 'RGB'); OpenCV writes BGR arrays.
            cv2.imwrite(os.path.join(folder, f'{i:06d}.png'),
                        pixels.astype(np.uint8).transpose(1, 2, 0)[:, :, ::-1])
        config = os.path.join(tmp, 'quant.json')
        Path(config).write_text(json.dumps(dict(
            format='RGB', mean=(-low / step).tolist(), normal=step.tolist(), width=width,
            height=height, path=folder, used_image_num=len(images),
            feature_quantize_method='EMA', weight_quantize_method='MAX_ABS',
            # mnnquant turns INT8 Winograd on with EMA; its x86 kernel gets tile edges of
            # dense 3x3 stride-1 convs wrong (a 3x3 conv 3->16: 0.22x its largest output
            # off, 0.009x without it; MNN 3.5.0 and 3.6.1).
            winogradOpt=False)))
        staged = os.path.join(tmp, 'int8.mnn')
        done = subprocess.run([sys.executable, '-c', _MNNQUANT, src, staged, config],
                              capture_output=True, text=True)
        if done.returncode != 0 or not os.path.isfile(staged):
            log = (done.stdout + done.stderr).strip()[-2000:]
            raise RuntimeError(f'MNN could not quantize {os.fspath(fp32)} (mnnquant exit '
                               f'{done.returncode}): {log}')
        shutil.move(staged, out)


class MnnModel(ExportedModel):
    """An MNN model (``.mnn``) on MNN's CPU backend, FP32 (``precision='high'``).
    MNN's module API has no per-op profiler: :meth:`profile` gives wall times and no
    nodes."""
    runtime = 'mnn'

    def __init__(self, path: str | os.PathLike, threads: Optional[int] = None,
                 profile: bool = False) -> None:
        import MNN

        super().__init__(path, threads, profile)
        config = {'backend': 'CPU', 'precision': 'high'}
        if threads is not None:
            config['numThread'] = threads
        manager = MNN.nn.create_runtime_manager((config, ))
        self._module = MNN.nn.load_module_from_file(self.path, [], [],
                                                    runtime_manager=manager)
        info = self._module.get_info()
        self.input_names = list(info['inputNames'])
        # In the graph's order (output0, output1, ...): a quantized model lists them reversed.
        self.output_names = _by_index(info['outputNames'])
        self._order = [list(info['outputNames']).index(n) for n in self.output_names]
        self._dtypes = [v.dtype for v in info['inputs']]  # float, or uint8 (end-to-end graphs)
        shapes = [tuple(d if d >= 0 else None for d in v.shape) for v in info['inputs']]
        # The converter records batch 1 for a graph whose batch, height and width are all
        # dynamic (rfcr-export --dynamic); such a graph runs any batch.
        self.input_shapes = [(None, ) + s[1:] if None in s else s for s in shapes]

    def run(self, arrays: Sequence[np.ndarray]) -> list[np.ndarray]:
        from MNN import expr

        outputs = self._module.forward([expr.const(x, list(x.shape), expr.NCHW, dtype)
                                        for x, dtype in zip(arrays, self._dtypes)])
        return [np.array(expr.convert(outputs[i], expr.NCHW).read(), copy=True)
                for i in self._order]


def cuda_available() -> bool:
    """Whether PyTorch sees a CUDA GPU (TensorRT builds and runs its engines on one)."""
    import torch

    return torch.cuda.is_available()


def export_tensorrt(module: nn.Module, inputs: Sequence[Tensor], path: str | os.PathLike,
                    dynamic: bool = False, **onnx_options) -> tuple[list[str], list[str]]:
    """Build a TensorRT engine ``path`` (``.engine``, FP32, TF32 off) for this machine's
    GPU from the ONNX graph (:func:`export_onnx`, with ``onnx_options``); with ``dynamic``,
    its optimization profile spans 1/4 to 2x the example height and width and batch 1 to
    2x the example's.

    Raises:
        RuntimeError: no CUDA GPU, or TensorRT could not parse or build the graph.
    """
    if not cuda_available():
        raise RuntimeError('TensorRT needs a CUDA GPU: torch.cuda.is_available() is False')
    import tensorrt as trt

    path = _suffix(path, '.engine', 'a TensorRT engine')
    inputs = tuple(inputs)
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(0)
    parser = trt.OnnxParser(network, logger)
    with tempfile.TemporaryDirectory() as tmp:
        src = os.path.join(tmp, 'model.onnx')
        names = export_onnx(module, inputs, src, dynamic=dynamic, **onnx_options)
        if not parser.parse_from_file(src):
            errors = '; '.join(str(parser.get_error(i)) for i in range(parser.num_errors))
            raise RuntimeError(f'TensorRT could not parse the ONNX graph: {errors}')
    config = builder.create_builder_config()
    config.clear_flag(trt.BuilderFlag.TF32)  # FP32 arithmetic, as the other runtimes
    if dynamic:
        profile = builder.create_optimization_profile()
        for name, x in zip(names[0], inputs):
            n, c, h, w = x.shape
            profile.set_shape(name, (1, c, max(h // 4, 1), max(w // 4, 1)), tuple(x.shape),
                              (2 * n, c, 2 * h, 2 * w))
        config.add_optimization_profile(profile)
    engine = builder.build_serialized_network(network, config)
    if engine is None:
        raise RuntimeError('TensorRT could not build an engine from the ONNX graph')
    path.write_bytes(bytes(engine))
    return names


class TensorRTModel(ExportedModel):
    """A TensorRT engine (:func:`export_tensorrt`) on the GPU: inputs are copied to the
    GPU, outputs back to numpy (the copies are part of each timed call)."""
    runtime = 'tensorrt'

    def __init__(self, path: str | os.PathLike, threads: Optional[int] = None,
                 profile: bool = False) -> None:
        if not cuda_available():
            raise RuntimeError('TensorRT needs a CUDA GPU: torch.cuda.is_available() is False')
        import tensorrt as trt

        super().__init__(path, threads, profile)
        runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
        self._engine = runtime.deserialize_cuda_engine(Path(self.path).read_bytes())
        self._context = self._engine.create_execution_context()
        names = [self._engine.get_tensor_name(i) for i in range(self._engine.num_io_tensors)]
        is_input = {n: self._engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT
                    for n in names}
        self.input_names = [n for n in names if is_input[n]]
        self.output_names = [n for n in names if not is_input[n]]
        self.input_shapes = [tuple(d if d >= 0 else None for d in self._engine.get_tensor_shape(n))
                             for n in self.input_names]

    def run(self, arrays: Sequence[np.ndarray]) -> list[np.ndarray]:
        import torch

        stream = torch.cuda.current_stream()
        feeds = [torch.from_numpy(np.asarray(x, dtype=np.float32)).cuda() for x in arrays]
        for name, x in zip(self.input_names, feeds):
            self._context.set_input_shape(name, tuple(x.shape))
            self._context.set_tensor_address(name, x.data_ptr())
        outputs = []
        for name in self.output_names:
            out = torch.empty(tuple(self._context.get_tensor_shape(name)), device='cuda')
            self._context.set_tensor_address(name, out.data_ptr())
            outputs.append(out)
        if not self._context.execute_async_v3(stream.cuda_stream):
            raise RuntimeError(f'TensorRT could not run {self.path}')
        stream.synchronize()
        return [o.cpu().numpy() for o in outputs]


def tensorrt_op_counts(path: str | os.PathLike) -> Counter:
    """TensorRT's engine does not list its layers by type: one entry, the engine."""
    return Counter({'TensorRT engine': 1})
