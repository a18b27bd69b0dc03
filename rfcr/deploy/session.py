"""Exported model files, loaded: an ONNX graph by ONNX Runtime (:class:`OrtModel`), an ONNX
graph or an OpenVINO IR (``.xml`` + ``.bin``) by OpenVINO (:class:`OpenVinoModel`); one
calling convention for all of them (:class:`ExportedModel`). Which runtime reads which file
is the runtime table's (:data:`rfcr.deploy.runtime.RUNTIMES`, whose ``load_exported`` checks
the file and picks the class).

Both runtimes run on CPU in FP32 (OpenVINO's ``INFERENCE_PRECISION_HINT`` is pinned to
``f32``: on CPUs with bf16 or AMX it would otherwise compute in bf16), or in INT8 where
the graph holds quantize / dequantize nodes (``rfcr-quantize``).
"""
from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
import time
from typing import Optional, Sequence

import numpy as np
import torch

__all__ = ['ExportedModel', 'OpenVinoModel', 'OrtModel', 'openvino_model', 'ort_session']

NodeTimes = list[tuple[str, float]]  # (op type, seconds) per node execution


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


def _dims(shape) -> tuple[Optional[int], ...]:
    """A graph input's shape, ``None`` for each dynamic dimension."""
    return tuple(d if isinstance(d, int) and d >= 0 else None for d in shape)


class ExportedModel:
    """A model file loaded by a runtime: ``model(*inputs)`` takes tensors or arrays (in
    the graph's input order) and returns the outputs as numpy arrays.

    A runtime's class sets ``input_names``, ``output_names`` and ``input_shapes`` and
    implements :meth:`run` and :meth:`_node_times`.

    Attributes:
        path, runtime: What runs (``runtime``: its name in the runtime table).
        threads: The runtime's intra-op threads (``None``: its default).
        input_names, output_names: The graph's.
        input_shapes: One tuple per input, ``None`` for a dynamic dimension.
    """
    runtime: str = ''
    input_names: list[str]
    output_names: list[str]
    input_shapes: list[tuple[Optional[int], ...]]

    def __init__(self, path: str | os.PathLike, threads: Optional[int] = None,
                 profile: bool = False) -> None:
        self.path = os.fspath(path)
        self.threads = threads
        self.profiled = profile

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
        raise NotImplementedError

    def profile(self, arrays: Sequence[np.ndarray], runs: int,
                warmup: int = 1) -> tuple[NodeTimes, list[float]]:
        """Run ``runs`` times (a model loaded with ``profile=True``, not run before) and
        return every node execution as ``(op type, seconds)`` and each run's wall seconds,
        profiler on. ``warmup`` runs come first and are left out of both: a freshly loaded
        model's first run creates its kernels and buffers."""
        if not self.profiled:
            raise RuntimeError(f'{self!r} was not loaded with profile=True')
        for _ in range(warmup):
            self.run(arrays)
            self._run_node_times()  # dropped
        records, walls = [], []
        for _ in range(runs):
            t0 = time.perf_counter()
            self.run(arrays)
            walls.append(time.perf_counter() - t0)
            records += self._run_node_times()
        return records + self._end_node_times(skip_runs=warmup), walls

    def node_times(self, arrays: Sequence[np.ndarray], runs: int) -> NodeTimes:
        """:meth:`profile`'s node executions alone."""
        return self.profile(arrays, runs)[0]

    def _run_node_times(self) -> NodeTimes:
        """The nodes of the run just done, for a runtime that reports them per run."""
        return []

    def _end_node_times(self, skip_runs: int = 0) -> NodeTimes:
        """Every node run since loading but in the first ``skip_runs`` runs, for a
        runtime that reports them at the end."""
        return []

    def __call__(self, *inputs: torch.Tensor | np.ndarray) -> list[np.ndarray]:
        return self.run(self.feeds(inputs))

    def __repr__(self) -> str:
        return f'{type(self).__name__}({self.path!r}, runtime={self.runtime!r})'


class OrtModel(ExportedModel):
    """An ONNX graph in an ONNX Runtime CPU session (:func:`ort_session`); with
    ``profile``, ORT's profiler records every node of every run (ended by
    :meth:`~ExportedModel.profile`)."""
    runtime = 'onnxruntime'

    def __init__(self, path: str | os.PathLike, threads: Optional[int] = None,
                 profile: bool = False) -> None:
        super().__init__(path, threads, profile)
        # ORT writes its profile to a file.
        self._profile_dir = tempfile.mkdtemp(prefix='rfcr-profile-') if profile else None
        prefix = self._profile_dir and os.path.join(self._profile_dir, 'ort')
        self._session = ort_session(self.path, threads, profile_prefix=prefix)
        inputs, outputs = self._session.get_inputs(), self._session.get_outputs()
        self.input_names = [i.name for i in inputs]
        self.output_names = [o.name for o in outputs]
        self.input_shapes = [_dims(i.shape) for i in inputs]

    def run(self, arrays: Sequence[np.ndarray]) -> list[np.ndarray]:
        return self._session.run(None, dict(zip(self.input_names, arrays)))

    def _end_node_times(self, skip_runs: int = 0) -> NodeTimes:
        with open(self._session.end_profiling()) as f:
            events = json.load(f)
        shutil.rmtree(self._profile_dir, ignore_errors=True)
        runs = sorted((e['ts'], e['ts'] + e['dur']) for e in events
                      if e.get('cat') == 'Session' and e['name'] == 'model_run')
        after = runs[skip_runs - 1][1] if 0 < skip_runs <= len(runs) else -math.inf
        return [(e['args']['op_name'], e['dur'] * 1e-6) for e in events
                if e.get('cat') == 'Node' and e['name'].endswith('_kernel_time')
                and e['ts'] >= after]


class OpenVinoModel(ExportedModel):
    """An OpenVINO IR or ONNX graph compiled for the CPU plugin (:func:`openvino_model`);
    with ``profile``, each run's executed nodes after OpenVINO's fusions (layout reorders
    included)."""
    runtime = 'openvino'

    def __init__(self, path: str | os.PathLike, threads: Optional[int] = None,
                 profile: bool = False) -> None:
        super().__init__(path, threads, profile)
        self._compiled = openvino_model(self.path, threads, profile)
        self._request = self._compiled.create_infer_request()
        self.input_names = [i.get_any_name() for i in self._compiled.inputs]
        self.output_names = [o.get_any_name() for o in self._compiled.outputs]
        self.input_shapes = [_dims(d.get_length() if d.is_static else -1
                                   for d in i.get_partial_shape())
                             for i in self._compiled.inputs]

    def run(self, arrays: Sequence[np.ndarray]) -> list[np.ndarray]:
        result = self._request.infer(list(arrays))
        return [result[o] for o in self._compiled.outputs]

    def _run_node_times(self) -> NodeTimes:
        return [(p.node_type, p.real_time.total_seconds())
                for p in self._request.profiling_info if p.status == p.Status.EXECUTED]
