"""The runtimes a model runs on, in one table (:data:`RUNTIMES`), as mmdeploy's backend
registry: PyTorch eager, ONNX Runtime, OpenVINO and ``torch.compile``.

A :class:`Runtime` says what the runtime is called, which files it reads and writes, how it
gets a model (``export`` + ``load``, or ``build`` for one that runs the module itself), how
it quantizes one (or not) and what it needs installed. Every tool reads the table:
``rfcr-export --format``, ``rfcr-test --runtime``, ``rfcr-quantize --runtime``,
``rfcr-bench --runtime``, the bench tables' names and notes. Adding a runtime is adding its
entry here (and the functions it names).

:meth:`Runtime.runner` gives a :class:`Runner`: a no-argument callable running a model once
(what :mod:`rfcr.analysis.latency` times) that also profiles itself (per-node times, what
:mod:`rfcr.analysis.profile` summarizes), without exporting again.

Example:
    >>> import torch
    >>> from rfcr.deploy.export import OnnxWrapper
    >>> from rfcr.deploy.runtime import RUNTIMES
    >>> conv = OnnxWrapper(torch.nn.Conv2d(3, 4, 1))
    >>> run = RUNTIMES['onnxruntime'].runner(conv, (torch.rand(1, 3, 8, 8), ), threads=1)
    >>> [o.shape for o in run()]
    [(1, 4, 8, 8)]
    >>> records, walls = run.profile(runs=2)
    >>> 'Conv' in {op for op, _ in records}, len(walls)
    (True, 2)
    >>> [RUNTIMES[name].label for name in ('eager', 'openvino', 'compile')]
    ['PyTorch eager', 'OpenVINO', 'torch.compile']
"""
from __future__ import annotations

import copy
import importlib.util
import os
import shutil
import tempfile
import time
import weakref
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Optional, Sequence

import torch
from torch import Tensor, nn

from .export import export_onnx, export_openvino, onnx_op_counts, openvino_op_counts
from .edge import (MnnModel, NcnnModel, TensorRTModel, cuda_available, export_mnn,
                   export_ncnn, export_tensorrt, mnn_op_counts, ncnn_op_counts,
                   quantize_mnn, tensorrt_op_counts)
from .litert import LiteRTModel, export_litert, litert_op_counts, quantize_litert
from .session import ExportedModel, NodeTimes, OpenVinoModel, OrtModel

__all__ = ['EAGER', 'EXPORTED_RUNTIMES', 'EXPORT_FORMATS', 'FILE_RUNTIMES', 'FILE_SUFFIXES',
           'QUANTIZE_RUNTIMES', 'RUNTIMES', 'FileRunner', 'Runner', 'Runtime', 'TorchRunner',
           'VerifyResult', 'available_runtimes', 'compiled_runner', 'default_runtime',
           'eager_runner', 'get_runtime', 'load_exported', 'quantize_onnx',
           'quantize_openvino', 'verify_exported']


class Runner:
    """``module(*inputs)`` ready to run on a runtime: calling it runs the model once (the
    call that is timed); :meth:`profile` runs it with the runtime's profiler on."""

    def __call__(self) -> object:
        raise NotImplementedError

    def profile(self, runs: int) -> tuple[NodeTimes, list[float]]:
        """Every node (op, kernel) execution of ``runs`` runs as ``(op type, seconds)``, and
        each run's wall seconds, profiler on."""
        raise NotImplementedError


def _is_op(name: str) -> bool:
    """A dispatched operator (``aten::conv2d``, ``mkldnn::_convolution_pointwise``, ...),
    not a profiler range such as ``Torch-Compiled Region: 0/0``."""
    return '::' in name and not name.startswith('#')


class TorchRunner(Runner):
    """``fn(*inputs)`` in inference mode, on ``threads`` intra-op threads (the count in
    force when called if ``None``; another count is restored after each call); profiled by
    ``torch.profiler`` (the operators called from outside any other operator)."""

    def __init__(self, fn: Callable[..., object], inputs: Sequence[Tensor],
                 threads: Optional[int] = None) -> None:
        self.fn, self.inputs, self.threads = fn, tuple(inputs), threads

    def __call__(self) -> object:
        previous = torch.get_num_threads()
        switch = self.threads is not None and self.threads != previous
        if switch:
            torch.set_num_threads(self.threads)
        try:
            with torch.inference_mode():
                return self.fn(*self.inputs)
        finally:
            if switch:
                torch.set_num_threads(previous)

    def profile(self, runs: int) -> tuple[NodeTimes, list[float]]:
        from torch.profiler import ProfilerActivity, profile
        walls = []
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            for _ in range(runs):
                t0 = time.perf_counter()
                self()
                walls.append(time.perf_counter() - t0)
        records = [(e.name, e.cpu_time_total * 1e-6) for e in prof.events()
                   if _is_op(e.name)
                   and not (e.cpu_parent is not None and _is_op(e.cpu_parent.name))]
        return records, walls


class FileRunner(Runner):
    """An exported file loaded by its runtime, run on fixed inputs. :meth:`profile` loads
    the same file again with the runtime's profiler on (ONNX Runtime switches it on only
    when loading; OpenVINO's counters would slow the timed model): nothing is exported
    twice."""

    def __init__(self, runtime: 'Runtime', model: ExportedModel,
                 inputs: Sequence[Tensor]) -> None:
        self.runtime, self.model = runtime, model
        self.feeds = model.feeds(tuple(inputs))

    def __call__(self) -> list:
        return self.model.run(self.feeds)

    def profile(self, runs: int) -> tuple[NodeTimes, list[float]]:
        profiled = self.runtime.load(self.model.path, self.model.threads, True)
        return profiled.profile(self.feeds, runs)


def eager_runner(module: nn.Module, inputs: Sequence[Tensor], threads: Optional[int] = None,
                 channels_last: bool = False) -> TorchRunner:
    """``module(*inputs)`` in PyTorch eager. With ``channels_last``, a copy of ``module``
    and the 4-D inputs are converted to ``torch.channels_last`` first (the caller's module
    is left as it is)."""
    module = module.eval()
    inputs = tuple(inputs)
    if channels_last:
        module = copy.deepcopy(module).to(memory_format=torch.channels_last)
        inputs = tuple(x.contiguous(memory_format=torch.channels_last) if x.dim() == 4 else x
                       for x in inputs)
    return TorchRunner(module, inputs, threads)


def compiled_runner(module: nn.Module, inputs: Sequence[Tensor],
                    threads: Optional[int] = None) -> TorchRunner:
    """``module(*inputs)`` compiled by ``torch.compile`` (inductor, CPU, static shapes,
    weights frozen into the graph).

    ``torch.export`` first captures the whole forward as one static graph (what cannot be
    captured, e.g. data-dependent control flow, raises here), then inductor compiles that
    graph module. Each model is its own graph module: dynamo's cache, which keeps at most 8
    graphs per function and would have every model of one class (every
    :class:`~rfcr.deploy.export.OnnxWrapper`) share its forward, never mixes two models.

    The graph is compiled here, for ``threads`` threads (inductor bakes the count into its
    kernels; the current ``torch.get_num_threads()`` when ``None``), and the runner runs
    with that many: compiling takes seconds to minutes, the runner's calls do not.
    """
    module = module.eval()
    inputs = tuple(inputs)
    with torch.no_grad():
        program = torch.export.export(module, inputs)
    compiled = torch.compile(program.module(), fullgraph=True, dynamic=False,
                             options={'freezing': True})
    runner = TorchRunner(compiled, inputs, threads or torch.get_num_threads())
    runner()  # compiles; fails here, not in a timed loop
    return runner


def _cpp_compiler() -> bool:
    """Whether a C++ compiler is on the ``PATH`` (inductor builds its CPU kernels with it)."""
    return any(shutil.which(c) for c in (os.environ.get('CXX', 'g++'), 'c++', 'clang++'))


def quantize_onnx(fp32: str | os.PathLike, out: str | os.PathLike,
                  batches: Sequence[Tensor]) -> None:
    """Static INT8 quantization (QDQ) of the ONNX graph ``fp32`` to ``out``, calibrated on
    ``batches`` (inputs of the graph's single input): INT8 weights per output channel,
    UINT8 activations, MinMax ranges."""
    import onnx
    from onnxruntime.quantization import (CalibrationDataReader, CalibrationMethod,
                                          QuantFormat, QuantType, quantize_static)

    # No quant_pre_process: on the folded graph it changed neither accuracy nor speed, and
    # its symbolic shape inference fails on the dynamic height and width.
    name = onnx.load(os.fspath(fp32), load_external_data=False).graph.input[0].name

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self._feeds = iter([{name: b.numpy()} for b in batches])

        def get_next(self):
            return next(self._feeds, None)

    quantize_static(os.fspath(fp32), os.fspath(out), Reader(), quant_format=QuantFormat.QDQ,
                    per_channel=True, activation_type=QuantType.QUInt8,
                    weight_type=QuantType.QInt8, calibrate_method=CalibrationMethod.MinMax)


def quantize_openvino(fp32: str | os.PathLike, out: str | os.PathLike,
                      batches: Sequence[Tensor]) -> None:
    """NNCF post-training INT8 quantization (performance preset: symmetric INT8) of the
    ONNX graph ``fp32``, read by OpenVINO, to the IR ``out`` (``.xml`` and ``.bin``),
    calibrated on ``batches``."""
    import nncf
    import openvino as ov

    model = ov.convert_model(os.fspath(fp32))
    dataset = nncf.Dataset(list(batches), lambda b: b.numpy())
    quantized = nncf.quantize(model, dataset, preset=nncf.QuantizationPreset.PERFORMANCE,
                              subset_size=len(batches))
    ov.save_model(quantized, os.fspath(out), compress_to_fp16=False)


@dataclass(frozen=True)
class Runtime:
    """One runtime: its names, what it needs, and how a model gets there and runs.

    A runtime either runs the module itself (``build``) or a file: ``export`` writes
    ``suffixes[0]`` (and its ``sidecars`` beside it), ``load`` reads any of ``suffixes``.

    Args:
        name: Its key in :data:`RUNTIMES` (``--runtime``, bench.json).
        label: What tables print.
        how: How it gets and runs the model, one line (the bench tables' notes).
        install: What to install where it is missing (error messages).
        packages: Modules it imports (:meth:`available`).
        requires: Another check of the environment (:meth:`available`).
        build: ``(module, inputs, threads) -> Runner``, for a runtime without a file.
        suffixes: The files it reads; it writes the first.
        sidecars: Suffixes of the files written beside it (OpenVINO's weights, ``.bin``).
        file_kind: What its file is called (messages).
        format: Its ``rfcr-export --format`` name.
        export: ``(module, inputs, path, **onnx_options) -> (input names, output names)``,
            writing ``path`` (:func:`~rfcr.deploy.export.export_onnx`'s options).
        load: ``(path, threads, profile) -> ExportedModel``.
        op_counts: ``path -> Counter`` of the op types its file holds.
        quantize: ``(fp32 .onnx, out, calibration batches) -> None`` writing an INT8 model
            to ``out`` (a ``suffixes[0]`` file); ``None``: it does not quantize.
        arm: Made for ARM phones and boards: on an x86 machine its numbers are those of
            its x86 kernels (the bench tables say so).
    """
    name: str
    label: str
    how: str
    install: str = ''
    packages: tuple[str, ...] = ()
    requires: Optional[Callable[[], bool]] = None
    build: Optional[Callable[[nn.Module, tuple[Tensor, ...], Optional[int]], Runner]] = None
    suffixes: tuple[str, ...] = ()
    sidecars: tuple[str, ...] = ()
    file_kind: str = ''
    format: Optional[str] = None
    export: Optional[Callable[..., tuple[list[str], list[str]]]] = None
    load: Optional[Callable[[str, Optional[int], bool], ExportedModel]] = None
    op_counts: Optional[Callable[[str | os.PathLike], Counter]] = None
    quantize: Optional[Callable[[str, str, Sequence[Tensor]], None]] = None
    arm: bool = False

    def available(self) -> bool:
        """Whether this environment has what the runtime needs."""
        return (all(importlib.util.find_spec(p) is not None for p in self.packages)
                and (self.requires is None or self.requires()))

    def runner(self, module: nn.Module, inputs: Sequence[Tensor],
               threads: Optional[int] = None,
               path: Optional[str | os.PathLike] = None) -> Runner:
        """A :class:`Runner` of ``module(*inputs)`` (a flat tuple of tensors out, e.g. an
        :class:`~rfcr.deploy.export.OnnxWrapper`; put in eval mode) with ``threads``
        intra-op threads (``None``: the runtime's default). A file runtime exports it
        (static shapes) to ``path``, by default a temporary file removed with the runner."""
        inputs = tuple(inputs)
        if self.build is not None:
            return self.build(module.eval(), inputs, threads)
        folder = None
        if path is None:
            folder = tempfile.mkdtemp(prefix='rfcr-runtime-')
            path = os.path.join(folder, 'model' + self.suffixes[0])
        try:
            self.export(module, inputs, path)
            runner = FileRunner(self, self.load(os.fspath(path), threads, False), inputs)
        except BaseException:
            if folder is not None:
                shutil.rmtree(folder, ignore_errors=True)
            raise
        if folder is not None:
            weakref.finalize(runner, shutil.rmtree, folder, True)
        return runner

    def save(self, source: str | os.PathLike, path: str | os.PathLike) -> None:
        """Move the file ``source`` and its sidecars to ``path``, the file last."""
        source, path = Path(source), Path(path)
        for suffix in self.sidecars:
            shutil.move(source.with_suffix(suffix), path.with_suffix(suffix))
        shutil.move(source, path)


EAGER = 'eager'  # the reference every other runtime is compared with
RUNTIMES: dict[str, Runtime] = {rt.name: rt for rt in (
    Runtime(EAGER, 'PyTorch eager', 'the module as built, in inference mode',
            build=eager_runner),
    Runtime('onnxruntime', 'ONNX Runtime',
            'exported to ONNX (opset 17, static shapes), ONNX Runtime CPU session, all graph '
            'optimizations',
            install="the onnxruntime and onnx packages (pip install 'rfcr[deploy]')",
            packages=('onnx', 'onnxruntime'), suffixes=('.onnx', ), file_kind='ONNX',
            format='onnx', export=export_onnx, load=OrtModel, op_counts=onnx_op_counts,
            quantize=quantize_onnx),
    Runtime('openvino', 'OpenVINO',
            'the same ONNX graph read by OpenVINO, CPU plugin, FP32, latency hint, one stream',
            install="the openvino and onnx packages (pip install 'rfcr[deploy]')",
            packages=('onnx', 'openvino'), suffixes=('.xml', '.onnx'), sidecars=('.bin', ),
            file_kind='OpenVINO IR', format='openvino', export=export_openvino,
            load=OpenVinoModel, op_counts=openvino_op_counts, quantize=quantize_openvino),
    Runtime('compile', 'torch.compile',
            'torch.compile (inductor, CPU, static shapes, weights frozen, one graph)',
            install='a C++ compiler (g++) for inductor', requires=_cpp_compiler,
            build=compiled_runner),
    Runtime('ncnn', 'ncnn',
            'the ONNX graph converted by pnnx (static shapes, batch 1), ncnn CPU, FP32',
            install="the ncnn and pnnx packages (pip install 'rfcr[deploy]')",
            packages=('onnx', 'ncnn', 'pnnx'), suffixes=('.param', ), sidecars=('.bin', ),
            file_kind='ncnn graph', format='ncnn', export=export_ncnn, load=NcnnModel,
            op_counts=ncnn_op_counts, arm=True),
    Runtime('mnn', 'MNN', "the ONNX graph converted by MNN's converter, MNN CPU, FP32",
            install="the MNN package (pip install 'rfcr[deploy]')",
            packages=('onnx', 'MNN'), suffixes=('.mnn', ), file_kind='MNN model',
            format='mnn', export=export_mnn, load=MnnModel, op_counts=mnn_op_counts,
            quantize=quantize_mnn, arm=True),
    Runtime('litert', 'LiteRT',
            'the onnxslim-folded ONNX graph converted by onnx2tf (NHWC) and LiteRT\'s converter, '
            'LiteRT interpreter (XNNPACK) CPU, static shapes, FP32',
            install="onnx2tf, tensorflow, tf-keras and ai-edge-litert (pip install 'rfcr[deploy]')",
            packages=('onnx', 'onnxslim', 'onnx2tf', 'tensorflow', 'ai_edge_litert'),
            suffixes=('.tflite', ), file_kind='LiteRT model', format='litert',
            export=export_litert, load=LiteRTModel, op_counts=litert_op_counts,
            quantize=quantize_litert, arm=True),
    Runtime('tensorrt', 'TensorRT',
            'an engine built from the ONNX graph for the CUDA GPU it runs on, FP32',
            install='a CUDA GPU and the tensorrt package',
            packages=('onnx', 'tensorrt'), requires=cuda_available, suffixes=('.engine', ),
            file_kind='TensorRT engine', format='tensorrt', export=export_tensorrt,
            load=TensorRTModel, op_counts=tensorrt_op_counts),
)}

# Views of the table the tools use.
EXPORTED_RUNTIMES = tuple(name for name in RUNTIMES if name != EAGER)
FILE_RUNTIMES = tuple(name for name, rt in RUNTIMES.items() if rt.load is not None)
QUANTIZE_RUNTIMES = tuple(name for name, rt in RUNTIMES.items() if rt.quantize is not None)
EXPORT_FORMATS = {rt.format: rt for rt in RUNTIMES.values() if rt.format is not None}
FILE_SUFFIXES = tuple(dict.fromkeys(s for name in FILE_RUNTIMES
                                    for s in RUNTIMES[name].suffixes))  # .onnx, .xml


def get_runtime(name: str, among: Optional[Iterable[str]] = None) -> Runtime:
    """The runtime called ``name``, one of ``among`` (by default the whole table)."""
    among = tuple(RUNTIMES if among is None else among)
    if name not in among:
        raise ValueError(f'runtime must be one of {among}, got {name!r}')
    return RUNTIMES[name]


def available_runtimes() -> tuple[str, ...]:
    """The :data:`EXPORTED_RUNTIMES` this environment can run (:meth:`Runtime.available`):
    ``onnxruntime`` and ``openvino`` where their packages are installed (``onnx`` too, to
    export), ``compile`` where a C++ compiler is on the ``PATH``."""
    return tuple(name for name in EXPORTED_RUNTIMES if RUNTIMES[name].available())


def default_runtime(path: str | os.PathLike) -> str:
    """The runtime a model file runs on unless told: the first one that writes such files
    (ONNX Runtime for ``.onnx``, OpenVINO for ``.xml``)."""
    writers: dict[str, str] = {}
    for name in FILE_RUNTIMES:
        writers.setdefault(RUNTIMES[name].suffixes[0], name)
    runtime = writers.get(Path(path).suffix.lower())
    if runtime is not None:
        return runtime
    kinds = ' or '.join(f'{s} ({RUNTIMES[n].file_kind})' for s, n in writers.items())
    raise ValueError(f'model file {os.fspath(path)!r}: expected a {kinds} file')


def load_exported(path: str | os.PathLike, runtime: Optional[str] = None,
                  threads: Optional[int] = None, profile: bool = False) -> ExportedModel:
    """``path`` (``.onnx`` or OpenVINO ``.xml``) loaded by ``runtime`` (by default
    :func:`default_runtime`) on ``threads`` threads; with ``profile``, ready for
    :meth:`~rfcr.deploy.session.ExportedModel.profile`."""
    path = os.fspath(path)
    rt = get_runtime(runtime or default_runtime(path), FILE_RUNTIMES)
    if Path(path).suffix.lower() not in rt.suffixes:
        raise ValueError(f'runtime {rt.name!r} runs {"/".join(rt.suffixes)} files, got '
                         f'{path!r}')
    if not os.path.isfile(path):
        raise FileNotFoundError(f'model file {path!r}: no such file')
    return rt.load(path, threads, profile)


@dataclass(frozen=True)
class VerifyResult:
    """An exported model's runtime against PyTorch on one set of inputs."""
    input_shapes: tuple[tuple[int, ...], ...]
    output_shapes: tuple[tuple[int, ...], ...]
    max_abs_diff: float  # over all outputs; inf when a shape differs
    max_abs_ref: float  # the largest PyTorch output magnitude, for scale


def verify_exported(path: str | os.PathLike,
                    module: nn.Module,
                    input_sets: Iterable[Sequence[Tensor]],
                    runtime: Optional[str] = None,
                    threads: Optional[int] = None) -> list[VerifyResult]:
    """Run the model file at ``path`` with ``runtime`` (:func:`load_exported`) and
    ``module`` (same calling convention as for
    :func:`~rfcr.deploy.export.export_onnx`) in eval mode on each set of inputs; report
    the largest absolute difference per set. Deciding what is too large is the caller's."""
    exported = load_exported(path, runtime, threads)
    module.eval()
    results = []
    for inputs in input_sets:
        inputs = tuple(inputs)
        if len(inputs) != len(exported.input_names):
            raise ValueError(f'the graph takes {len(exported.input_names)} inputs, got '
                             f'{len(inputs)}')
        with torch.no_grad():
            refs = [r.float().numpy() for r in module(*inputs)]
        outs = exported(*inputs)
        diff = float('inf')
        if len(outs) == len(refs) and all(o.shape == r.shape for o, r in zip(outs, refs)):
            diff = max((float(abs(o - r).max()) for o, r in zip(outs, refs)), default=0.0)
        results.append(VerifyResult(
            tuple(tuple(x.shape) for x in inputs), tuple(tuple(o.shape) for o in outs), diff,
            max(float(abs(r).max()) for r in refs)))
    return results
