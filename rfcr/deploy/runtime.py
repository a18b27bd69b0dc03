"""Runners: no-argument callables running one model once, in PyTorch eager, ONNX Runtime,
OpenVINO or compiled by ``torch.compile``, folded or not. Timing them is
:mod:`rfcr.analysis.latency`'s job
(:func:`~rfcr.analysis.latency.measure_deploy_latency`).

Example:
    >>> import torch
    >>> from rfcr.models import RFCR
    >>> from rfcr.deploy.export import neck_wrapper
    >>> from rfcr.deploy.runtime import deploy_runners
    >>> neck = neck_wrapper(RFCR(in_channels=(8, 16, 24), collect_channels=8,
    ...                          fuse_channels=8))
    >>> feats = (torch.rand(1, 8, 16, 16), torch.rand(1, 16, 8, 8), torch.rand(1, 24, 4, 4))
    >>> runners = deploy_runners(neck, feats)
    >>> list(runners)  # doctest: +NORMALIZE_WHITESPACE
    ['eager', 'eager channels_last', 'eager deploy', 'eager deploy channels_last',
     'onnxruntime', 'onnxruntime deploy']
    >>> len(runners['eager deploy']())
    3
"""
from __future__ import annotations

import copy
import importlib.util
import os
import shutil
import tempfile
import types
from typing import Callable, Optional, Sequence

import torch
from torch import Tensor, nn

from .export import DEFAULT_OPSET, export_onnx, export_openvino
from .fold import switch_to_deploy
from .session import ExportedModel

__all__ = ['EXPORTED_RUNTIMES', 'RUNTIMES', 'available_runtimes', 'compiled_runner',
           'deploy_runners', 'exported_file_runner', 'runtime_runner', 'torch_runner']

# Where a model runs besides PyTorch eager ('torch'): ONNX Runtime and OpenVINO run it
# exported (rfcr.deploy.export), 'compile' is torch.compile (inductor) on CPU.
EXPORTED_RUNTIMES = ('onnxruntime', 'openvino', 'compile')
RUNTIMES = ('torch', ) + EXPORTED_RUNTIMES


def available_runtimes() -> tuple[str, ...]:
    """The :data:`EXPORTED_RUNTIMES` this environment can run: ``onnxruntime`` and
    ``openvino`` where their packages are installed (``onnx`` too, to export), ``compile``
    where a C++ compiler is on the ``PATH`` (inductor builds its CPU kernels with it)."""
    have = {name: importlib.util.find_spec(name) is not None
            for name in ('onnx', 'onnxruntime', 'openvino')}
    compiler = any(shutil.which(c) for c in (os.environ.get('CXX', 'g++'), 'c++', 'clang++'))
    usable = {'onnxruntime': have['onnx'] and have['onnxruntime'],
              'openvino': have['onnx'] and have['openvino'], 'compile': compiler}
    return tuple(rt for rt in EXPORTED_RUNTIMES if usable[rt])


def torch_runner(module: nn.Module, inputs: Sequence[Tensor],
                 channels_last: bool = False) -> Callable[[], object]:
    """A no-argument callable running ``module(*inputs)`` in inference mode.

    With ``channels_last``, a copy of ``module`` and the 4-D inputs are converted to
    ``torch.channels_last`` first (the caller's module is left as it is).
    """
    module = module.eval()
    inputs = tuple(inputs)
    if channels_last:
        module = copy.deepcopy(module).to(memory_format=torch.channels_last)
        inputs = tuple(x.contiguous(memory_format=torch.channels_last) if x.dim() == 4 else x
                       for x in inputs)

    def run() -> object:
        with torch.inference_mode():
            return module(*inputs)

    return run


def exported_file_runner(runtime: str, module: nn.Module, inputs: Sequence[Tensor],
                         threads: Optional[int] = None, opset: int = DEFAULT_OPSET,
                         path: Optional[str | os.PathLike] = None) -> Callable[[], object]:
    """A no-argument callable running ``module(*inputs)`` exported (static shapes) to
    ``path`` (``.onnx`` for ONNX Runtime, ``.xml`` for OpenVINO; by default a temporary
    file removed once the runtime holds the model) and loaded by ``runtime``."""
    suffix = {'onnxruntime': '.onnx', 'openvino': '.xml'}[runtime]
    export = export_onnx if runtime == 'onnxruntime' else export_openvino
    with tempfile.TemporaryDirectory() as tmp:
        path = os.fspath(path) if path is not None else os.path.join(tmp, 'model' + suffix)
        export(module, inputs, path, opset=opset)
        model = ExportedModel(path, runtime, threads)
    feeds = model.feeds(inputs)

    def run() -> object:
        return model.run(feeds)

    return run


def compiled_runner(module: nn.Module, inputs: Sequence[Tensor],
                    threads: Optional[int] = None) -> Callable[[], object]:
    """A no-argument callable running ``module(*inputs)`` compiled by ``torch.compile``
    (inductor, CPU, static shapes, weights frozen into the graph) in inference mode.

    The graph is compiled here, for ``threads`` threads (inductor bakes the count into
    its kernels; the current ``torch.get_num_threads()`` when ``None``), and the runner
    runs with that many: compiling takes seconds to minutes, the runner's calls do not.
    The whole forward must compile to one graph (``fullgraph=True``): a graph break
    raises instead of silently running pieces in eager.
    """
    module = module.eval()
    inputs = tuple(inputs)

    def call(*xs: Tensor) -> object:
        return module(*xs)

    # Dynamo keeps the graphs it compiles on the code object of the function it compiles,
    # at most recompile_limit (8) of them: with one shared function, the ninth model would
    # fail to compile. A fresh code object per model keeps each model's graph apart.
    call = types.FunctionType(call.__code__.replace(), call.__globals__, call.__name__,
                              None, call.__closure__)
    compiled = torch.compile(call, fullgraph=True, dynamic=False,
                             options={'freezing': True})
    threads = threads or torch.get_num_threads()

    def run() -> object:
        # The graph was compiled for `threads` threads: another count would recompile it.
        previous = torch.get_num_threads()
        if previous != threads:
            torch.set_num_threads(threads)
        try:
            with torch.inference_mode():
                return compiled(*inputs)
        finally:
            if previous != threads:
                torch.set_num_threads(previous)

    run()  # compiles; fails here, not in a timed loop
    return run


def runtime_runner(runtime: str, module: nn.Module, inputs: Sequence[Tensor],
                   threads: Optional[int] = None,
                   path: Optional[str | os.PathLike] = None) -> Callable[[], object]:
    """A runner of ``module(*inputs)`` (a flat tuple of tensors out, e.g. an
    :class:`~rfcr.deploy.export.OnnxWrapper`) on ``runtime``, one of
    :data:`EXPORTED_RUNTIMES`, with ``threads`` intra-op threads; ``path``: where the
    exported file goes (ONNX Runtime and OpenVINO; a temporary file by default)."""
    if runtime in ('onnxruntime', 'openvino'):
        return exported_file_runner(runtime, module, inputs, threads, path=path)
    if runtime == 'compile':
        return compiled_runner(module, inputs, threads)
    raise ValueError(f'runtime must be one of {EXPORTED_RUNTIMES}, got {runtime!r}')


def deploy_runners(module: nn.Module,
                   inputs: Sequence[Tensor],
                   *,
                   runtimes: Sequence[str] = ('torch', 'onnxruntime'),
                   channels_last: bool = True,
                   threads: Optional[int] = None,
                   export_dir: Optional[str | os.PathLike] = None
                   ) -> dict[str, Callable[[], object]]:
    """Runners of ``module`` unfolded and folded (:func:`switch_to_deploy`), in PyTorch
    eager (contiguous, and channels_last if asked) and on each exported runtime asked,
    by name: ``eager``, ``eager channels_last``, ``eager deploy``, ``eager deploy
    channels_last``, then ``RUNTIME`` and ``RUNTIME deploy`` for each of ``runtimes``.

    Time them, alone or merged with other runners, with
    :func:`rfcr.analysis.latency.time_interleaved`.

    Args:
        module: Called as ``module(*inputs)`` and returning a flat tuple of tensors, e.g.
            :func:`~rfcr.deploy.export.detector_wrapper` of a detector. It is put in eval
            mode and not otherwise modified: the folded variant is a copy.
        inputs: The inputs every runner runs on (graphs are exported and compiled static).
        runtimes: Any of :data:`RUNTIMES` (``'torch'``: eager).
        channels_last: Add the channels_last eager runners.
        threads: Intra-op threads of the ONNX Runtime and OpenVINO runners and of the
            compiled kernels (``None``: each library's default). Eager PyTorch's are
            whatever ``torch.get_num_threads()`` is when the runners run.
        export_dir: Where to keep the exported files (``model.onnx``,
            ``model_deploy.onnx``, ``model.xml``, ...); by default they are written to a
            temporary folder and removed once the runtimes hold them.
    """
    runtimes = tuple(runtimes)
    if not runtimes or not set(runtimes) <= set(RUNTIMES):
        raise ValueError(f'runtimes must be a non-empty subset of {RUNTIMES}, got {runtimes!r}')
    inputs = tuple(inputs)
    module = module.eval()
    variants = {'': module, ' deploy': switch_to_deploy(copy.deepcopy(module))}
    runners: dict[str, Callable[[], object]] = {}
    if 'torch' in runtimes:
        for suffix, m in variants.items():
            runners[f'eager{suffix}'] = torch_runner(m, inputs)
            if channels_last:
                runners[f'eager{suffix} channels_last'] = torch_runner(m, inputs, True)
    for rt in EXPORTED_RUNTIMES:
        if rt not in runtimes:
            continue
        for suffix, m in variants.items():
            path = None
            if export_dir is not None and rt != 'compile':
                path = os.path.join(export_dir, f'model{suffix.replace(" ", "_")}'
                                    + ('.onnx' if rt == 'onnxruntime' else '.xml'))
            runners[f'{rt}{suffix}'] = runtime_runner(rt, m, inputs, threads, path)
    return runners


