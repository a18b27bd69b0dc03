"""Runners: no-argument callables running one model once, in PyTorch eager or in ONNX
Runtime, folded or not. Timing them is :mod:`rfcr.analysis.latency`'s job
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
import os
import tempfile
from typing import Callable, Optional, Sequence

import torch
from torch import Tensor, nn

from .export import DEFAULT_OPSET, export_onnx, ort_session
from .fold import switch_to_deploy

__all__ = ['EXPORTED_RUNTIMES', 'RUNTIMES', 'deploy_runners', 'exported_ort_runner',
           'ort_runner', 'runtime_runner', 'torch_runner']

# Where a model runs besides PyTorch eager ('torch'): the model is exported to it.
EXPORTED_RUNTIMES = ('onnxruntime', )
RUNTIMES = ('torch', ) + EXPORTED_RUNTIMES


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


def ort_runner(session, inputs: Sequence[Tensor]) -> Callable[[], object]:
    """A no-argument callable running an ONNX Runtime ``session`` on ``inputs``."""
    feeds = {i.name: x.numpy() for i, x in zip(session.get_inputs(), inputs)}

    def run() -> object:
        return session.run(None, feeds)

    return run


def exported_ort_runner(module: nn.Module, inputs: Sequence[Tensor],
                        threads: Optional[int] = None, opset: int = DEFAULT_OPSET,
                        path: Optional[str | os.PathLike] = None) -> Callable[[], object]:
    """:func:`ort_runner` of ``module(*inputs)`` exported to ONNX (static shapes) at
    ``path``, by default a temporary file removed once the session holds the graph."""
    with tempfile.TemporaryDirectory() as tmp:
        path = os.fspath(path) if path is not None else os.path.join(tmp, 'model.onnx')
        export_onnx(module, inputs, path, opset=opset)
        return ort_runner(ort_session(path, threads), inputs)


def runtime_runner(runtime: str, module: nn.Module, inputs: Sequence[Tensor],
                   threads: Optional[int] = None) -> Callable[[], object]:
    """A runner of ``module(*inputs)`` (a flat tuple of tensors out, e.g. an
    :class:`~rfcr.deploy.export.OnnxWrapper`) exported to ``runtime``, one of
    :data:`EXPORTED_RUNTIMES`, with ``threads`` intra-op threads."""
    if runtime == 'onnxruntime':
        return exported_ort_runner(module, inputs, threads)
    raise ValueError(f'runtime must be one of {EXPORTED_RUNTIMES}, got {runtime!r}')


def deploy_runners(module: nn.Module,
                   inputs: Sequence[Tensor],
                   *,
                   runtimes: Sequence[str] = RUNTIMES,
                   channels_last: bool = True,
                   threads: Optional[int] = None,
                   opset: int = DEFAULT_OPSET,
                   onnx_dir: Optional[str | os.PathLike] = None
                   ) -> dict[str, Callable[[], object]]:
    """Runners of ``module`` unfolded and folded (:func:`switch_to_deploy`), in PyTorch
    eager (contiguous, and channels_last if asked) and in ONNX Runtime, by name:
    ``eager``, ``eager channels_last``, ``eager deploy``, ``eager deploy channels_last``,
    ``onnxruntime``, ``onnxruntime deploy`` (those of the ``runtimes`` asked).

    Time them, alone or merged with other runners, with
    :func:`rfcr.analysis.latency.time_interleaved`.

    Args:
        module: Called as ``module(*inputs)`` and returning a flat tuple of tensors, e.g.
            :func:`~rfcr.deploy.export.detector_wrapper` of a detector. It is put in eval
            mode and not otherwise modified: the folded variant is a copy.
        inputs: The inputs every runner runs on (the ONNX graphs are exported static).
        runtimes: Any of ``'torch'`` and ``'onnxruntime'``.
        channels_last: Add the channels_last eager runners.
        threads: Intra-op threads of the ONNX Runtime sessions (``None``: ORT's default).
            PyTorch's are whatever ``torch.get_num_threads()`` is when the runners run.
        opset: ONNX opset of the exported graphs.
        onnx_dir: Where to keep the two ``.onnx`` files; by default they are written to a
            temporary folder and removed once the sessions hold them.
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
    if 'onnxruntime' in runtimes:
        for suffix, m in variants.items():
            path = (None if onnx_dir is None else
                    os.path.join(onnx_dir, f'model{suffix.replace(" ", "_")}.onnx'))
            runners[f'onnxruntime{suffix}'] = exported_ort_runner(m, inputs, threads, opset,
                                                                  path)
    return runners


