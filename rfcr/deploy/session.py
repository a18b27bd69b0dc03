"""Exported model files, run: an ONNX graph by ONNX Runtime or OpenVINO, an OpenVINO IR
(``.xml`` + ``.bin``) by OpenVINO; one calling convention for all of them.

Both runtimes run on CPU in FP32 (OpenVINO's ``INFERENCE_PRECISION_HINT`` is pinned to
``f32``: on CPUs with bf16 or AMX it would otherwise compute in bf16), or in INT8 where
the graph holds quantize / dequantize nodes (``rfcr-quantize``).

Example:
    >>> import os, tempfile, torch
    >>> from rfcr.deploy.export import OnnxWrapper, export_onnx
    >>> from rfcr.deploy.session import load_exported
    >>> conv = OnnxWrapper(torch.nn.Conv2d(3, 4, 1))
    >>> path = os.path.join(tempfile.mkdtemp(), 'conv.onnx')
    >>> _ = export_onnx(conv, (torch.rand(1, 3, 8, 8), ), path)
    >>> model = load_exported(path, threads=1)
    >>> model.runtime, model.input_names, [o.shape for o in model(torch.rand(1, 3, 8, 8))]
    ('onnxruntime', ['input0'], [(1, 4, 8, 8)])
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import torch

__all__ = ['FILE_RUNTIMES', 'ExportedModel', 'default_runtime', 'load_exported',
           'openvino_model', 'ort_session']

# Runtimes that run a model file, and the files each reads.
FILE_RUNTIMES = ('onnxruntime', 'openvino')
RUNTIME_SUFFIXES = {'onnxruntime': ('.onnx', ), 'openvino': ('.onnx', '.xml')}
DEFAULT_RUNTIMES = {'.onnx': 'onnxruntime', '.xml': 'openvino'}


def ort_session(path: str | os.PathLike, threads: Optional[int] = None,
                providers: Sequence[str] = ('CPUExecutionProvider', ),
                profile_prefix: Optional[str] = None):
    """An ONNX Runtime inference session with all graph optimizations, running the
    graph's nodes one after another on ``threads`` intra-op threads (ORT's default when
    ``None``) that sleep rather than spin when idle; with ``profile_prefix``, recording
    each node's time (ORT's profiler, written to ``{profile_prefix}*.json``)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    if profile_prefix is not None:
        options.enable_profiling = True
        options.profile_file_prefix = profile_prefix
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.log_severity_level = 3
    # No busy-waiting between runs: ORT's idle threads would spin on the cores that the
    # next (PyTorch) call in an interleaved benchmark needs.
    options.add_session_config_entry('session.intra_op.allow_spinning', '0')
    if threads is not None:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
    return ort.InferenceSession(os.fspath(path), options, providers=list(providers))


def openvino_model(path: str | os.PathLike, threads: Optional[int] = None,
                   profile: bool = False):
    """An OpenVINO model (``.xml`` IR or ``.onnx``) compiled for the CPU plugin: one
    stream, latency-oriented, FP32 arithmetic (INT8 where the graph is quantized), on
    ``threads`` threads (OpenVINO's default when ``None``); with ``profile``, counting
    each node's time (``PERF_COUNT``)."""
    import openvino as ov

    config = {'PERFORMANCE_HINT': 'LATENCY', 'NUM_STREAMS': '1',
              'INFERENCE_PRECISION_HINT': 'f32', 'PERF_COUNT': bool(profile)}
    if threads is not None:
        config['INFERENCE_NUM_THREADS'] = threads
    return ov.Core().compile_model(os.fspath(path), 'CPU', config)


def default_runtime(path: str | os.PathLike) -> str:
    """The runtime a model file runs on unless told: ONNX Runtime for ``.onnx``, OpenVINO
    for ``.xml``."""
    runtime = DEFAULT_RUNTIMES.get(Path(path).suffix.lower())
    if runtime is not None:
        return runtime
    raise ValueError(f'model file {os.fspath(path)!r}: expected a .onnx (ONNX) or .xml '
                     '(OpenVINO IR) file')


def _dims(shape) -> tuple[Optional[int], ...]:
    """A graph input's shape, ``None`` for each dynamic dimension."""
    return tuple(d if isinstance(d, int) and d >= 0 else None for d in shape)


class ExportedModel:
    """A model file loaded by a runtime: ``model(*inputs)`` takes tensors or arrays (in
    the graph's input order) and returns the outputs as numpy arrays.

    Attributes:
        path, runtime: What runs.
        input_names, output_names: The graph's.
        input_shapes: One tuple per input, ``None`` for a dynamic dimension.
    """

    def __init__(self, path: str | os.PathLike, runtime: Optional[str] = None,
                 threads: Optional[int] = None, profile: bool = False) -> None:
        self.path = os.fspath(path)
        self.runtime = runtime or default_runtime(path)
        if self.runtime not in FILE_RUNTIMES:
            raise ValueError(f'runtime must be one of {FILE_RUNTIMES}, got {self.runtime!r}')
        suffix = Path(path).suffix.lower()
        if suffix not in RUNTIME_SUFFIXES[self.runtime]:
            raise ValueError(f'runtime {self.runtime!r} runs '
                             f'{"/".join(RUNTIME_SUFFIXES[self.runtime])} files, got '
                             f'{self.path!r}')
        if not os.path.isfile(self.path):
            raise FileNotFoundError(f'model file {self.path!r}: no such file')
        self._profile = profile
        self._profile_dir = None
        if self.runtime == 'onnxruntime':
            if profile:  # ORT writes its profile to a file
                self._profile_dir = tempfile.mkdtemp(prefix='rfcr-profile-')
            prefix = self._profile_dir and os.path.join(self._profile_dir, 'ort')
            self._session = ort_session(self.path, threads, profile_prefix=prefix)
            inputs, outputs = self._session.get_inputs(), self._session.get_outputs()
            self.input_names = [i.name for i in inputs]
            self.output_names = [o.name for o in outputs]
            self.input_shapes = [_dims(i.shape) for i in inputs]
        else:
            self._compiled = openvino_model(self.path, threads, profile)
            self._request = self._compiled.create_infer_request()
            self.input_names = [i.get_any_name() for i in self._compiled.inputs]
            self.output_names = [o.get_any_name() for o in self._compiled.outputs]
            self.input_shapes = [_dims(d.get_length() if d.is_static else -1
                                       for d in i.get_partial_shape())
                                 for i in self._compiled.inputs]

    def feeds(self, inputs: Sequence[torch.Tensor | np.ndarray]) -> list[np.ndarray]:
        """``inputs`` as the contiguous float arrays the runtime reads, checked against
        the graph's inputs."""
        if len(inputs) != len(self.input_names):
            raise ValueError(f'{self.path} takes {len(self.input_names)} inputs, got '
                             f'{len(inputs)}')
        arrays = []
        for name, shape, x in zip(self.input_names, self.input_shapes, inputs):
            x = np.ascontiguousarray(x.detach().cpu().numpy() if torch.is_tensor(x) else x)
            if len(shape) != x.ndim or any(d is not None and d != n
                                           for d, n in zip(shape, x.shape)):
                wanted = 'x'.join('?' if d is None else str(d) for d in shape)
                raise ValueError(f'{self.path}: input {name!r} has shape {wanted}, got '
                                 f'{"x".join(map(str, x.shape))}')
            arrays.append(x)
        return arrays

    def run(self, arrays: Sequence[np.ndarray]) -> list[np.ndarray]:
        """The outputs for arrays already checked by :meth:`feeds` (the timed call)."""
        if self.runtime == 'onnxruntime':
            return self._session.run(None, dict(zip(self.input_names, arrays)))
        result = self._request.infer(list(arrays))
        return [result[o] for o in self._compiled.outputs]

    def node_times(self, arrays: Sequence[np.ndarray], runs: int
                   ) -> list[tuple[str, float]]:
        """Run ``runs`` times (a model loaded with ``profile=True``) and return every node
        execution as ``(op type, seconds)``: ONNX Runtime's kernel times (once per
        model: its profile ends here), OpenVINO's executed nodes after its fusions
        (layout reorders included)."""
        if not self._profile:
            raise RuntimeError(f'{self!r} was not loaded with profile=True')
        records = []
        for _ in range(runs):
            self.run(arrays)
            if self.runtime == 'openvino':
                records += [(p.node_type, p.real_time.total_seconds())
                            for p in self._request.profiling_info
                            if p.status == p.Status.EXECUTED]
        if self.runtime == 'onnxruntime':
            with open(self._session.end_profiling()) as f:
                events = json.load(f)
            records = [(e['args']['op_name'], e['dur'] * 1e-6) for e in events
                       if e.get('cat') == 'Node' and e['name'].endswith('_kernel_time')]
            shutil.rmtree(self._profile_dir, ignore_errors=True)
        return records

    def __call__(self, *inputs: torch.Tensor | np.ndarray) -> list[np.ndarray]:
        return self.run(self.feeds(inputs))

    def __repr__(self) -> str:
        return f'ExportedModel({self.path!r}, runtime={self.runtime!r})'


def load_exported(path: str | os.PathLike, runtime: Optional[str] = None,
                  threads: Optional[int] = None) -> ExportedModel:
    """``path`` (``.onnx`` or OpenVINO ``.xml``) loaded by ``runtime`` (by default ONNX
    Runtime for ``.onnx``, OpenVINO for ``.xml``) on ``threads`` threads."""
    return ExportedModel(path, runtime, threads)
