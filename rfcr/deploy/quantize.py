"""INT8 post-training quantization of a detector, calibrated on its config's own data.

The detector is folded (:func:`~rfcr.deploy.switch_to_deploy`, exact) and exported as
``rfcr-export --dynamic --deploy`` exports it (raw head outputs, dynamic batch, height and
width). Calibration images come from the config's dataset (by default its validation
split) through the config's pipeline and the model's ``data_preprocessor``: exactly the
tensors the graph receives at test time. Then:

each runtime of :data:`~rfcr.deploy.runtime.QUANTIZE_RUNTIMES` quantizes that graph its
own way (its ``quantize`` in the runtime table):

- ONNX Runtime: static quantization in QDQ format (``onnxruntime.quantization``): INT8
  weights per output channel, UINT8 activations, MinMax ranges;
- OpenVINO: NNCF's post-training quantization (``nncf.quantize``, performance preset:
  symmetric INT8) of the OpenVINO model read from the same ONNX graph;
- MNN: MNN's ``mnnquant`` (INT8 weights and features, EMA ranges) of the graph converted
  to MNN, fixed at the first batch's size (:func:`~rfcr.deploy.edge.quantize_mnn`);
- LiteRT: full-integer INT8 by LiteRT's converter, fixed at the batches' size
  (:func:`~rfcr.deploy.litert.quantize_litert`).

ncnn does not quantize here (its Python package has no INT8 calibration tool), nor does
TensorRT (its INT8 engines are built on a GPU). Nothing is written unless every step
succeeds.
"""
from __future__ import annotations

import copy
import os
import tempfile
from pathlib import Path
from typing import Sequence

import torch
from mmengine.dataset import pseudo_collate
from torch import Tensor, nn

from mmdet.registry import DATASETS

from .export import detector_wrapper, export_onnx, odd_pyramid_size
from .fold import switch_to_deploy
from .runtime import QUANTIZE_RUNTIMES, get_runtime

__all__ = ['calibration_batches', 'quantize_detector']


def calibration_batches(cfg, data_preprocessor: nn.Module, num: int,
                        split: str = 'val') -> list[Tensor]:
    """The first ``num`` images of the dataset of ``cfg``'s ``{split}_dataloader``, each
    through the dataset's pipeline and ``data_preprocessor`` (normalized, padded): a list
    of ``(1, 3, H, W)`` tensors.

    Raises:
        ValueError: ``num`` is not a positive int, the config has no such split, or the
            split holds fewer than ``num`` images (none at all included).
    """
    if isinstance(num, bool) or not isinstance(num, int) or num <= 0:
        raise ValueError(f'num must be a positive int (calibration images), got {num!r}')
    loader = cfg.get(f'{split}_dataloader')
    if not loader or 'dataset' not in loader:
        raise ValueError(f'split={split!r}: the config has no {split}_dataloader.dataset')
    dataset = DATASETS.build(dict(copy.deepcopy(loader['dataset']), lazy_init=True))
    try:
        size = len(dataset)  # loads the annotations
    except ValueError:
        # mmengine cannot serialize an empty data list: say what is wrong instead.
        if getattr(dataset, 'data_list', None) != []:
            raise
        size = 0
    if size < num:
        source = loader['dataset'].get('ann_file', loader['dataset'].get('type'))
        raise ValueError(f'the {split} split ({source}) holds {size} images; {num} '
                         'calibration images were asked for')
    data_preprocessor.eval()
    with torch.no_grad():
        return [data_preprocessor(pseudo_collate([dataset[i]]), False)['inputs']
                for i in range(num)]


def quantize_detector(detector: nn.Module, batches: Sequence[Tensor],
                      out: str | os.PathLike, runtime: str = 'onnxruntime') -> dict:
    """Fold ``detector`` (a copy), export its raw head outputs with dynamic batch, height
    and width, quantize to INT8 for ``runtime`` calibrated on ``batches``
    (:func:`calibration_batches`), and write the result to ``out`` (the file ``runtime``
    writes: ``.onnx`` for ONNX Runtime, ``.xml`` + ``.bin`` for OpenVINO, ``.mnn``,
    ``.tflite``) once everything has succeeded.

    Returns:
        ``path``, ``runtime``, ``op_counts`` and ``input_shape`` (``None`` for a dynamic
        dimension; MNN and LiteRT fix it at the batches') of the quantized model.
    """
    rt = get_runtime(runtime, QUANTIZE_RUNTIMES)
    out = Path(out)
    if out.suffix != rt.suffixes[0]:
        raise ValueError(f'runtime {runtime!r} writes a {rt.suffixes[0]} file, got '
                         f'{os.fspath(out)!r}')
    if not batches:
        raise ValueError('no calibration batches')
    wrapper = detector_wrapper(switch_to_deploy(copy.deepcopy(detector)))
    _, _, height, width = batches[0].shape
    # Traced where every shape-dependent branch takes its general path (export.py).
    example = torch.zeros(1, 3, odd_pyramid_size(height), odd_pyramid_size(width))
    with tempfile.TemporaryDirectory() as tmp:
        fp32 = os.path.join(tmp, 'fp32.onnx')
        export_onnx(wrapper, (example, ), fp32, input_names=['input'], dynamic=True)
        staged = os.path.join(tmp, 'int8' + out.suffix)
        rt.quantize(fp32, staged, batches)
        op_counts = rt.op_counts(staged)
        input_shape = rt.load(staged, 1, False).input_shapes[0]
        rt.save(staged, out)
    return dict(path=os.fspath(out), runtime=runtime, op_counts=op_counts,
                input_shape=input_shape)

