"""INT8 post-training quantization of a detector, calibrated on its config's own data.

The detector is folded (:func:`~rfcr.deploy.switch_to_deploy`, exact) and exported as
``rfcr-export --dynamic --deploy`` exports it (raw head outputs, dynamic batch, height and
width). Calibration images come from the config's dataset (by default its validation
split) through the config's pipeline and the model's ``data_preprocessor``: exactly the
tensors the graph receives at test time. Then:

- ONNX Runtime: static quantization in QDQ format (``onnxruntime.quantization``): INT8
  weights per output channel, UINT8 activations, MinMax ranges;
- OpenVINO: NNCF's post-training quantization (``nncf.quantize``, performance preset:
  symmetric INT8) of the OpenVINO model read from the same ONNX graph.

Nothing is written unless every step succeeds.
"""
from __future__ import annotations

import copy
import os
import shutil
import tempfile
from pathlib import Path
from typing import Sequence

import torch
from mmengine.dataset import pseudo_collate
from torch import Tensor, nn

from mmdet.registry import DATASETS

from .export import (detector_wrapper, export_onnx, odd_pyramid_size, onnx_op_counts,
                     openvino_op_counts, save_ir)
from .fold import switch_to_deploy

__all__ = ['QUANTIZE_RUNTIMES', 'calibration_batches', 'quantize_detector',
           'quantize_onnx', 'quantize_openvino']

# Runtime -> the file it writes.
QUANTIZE_RUNTIMES = {'onnxruntime': '.onnx', 'openvino': '.xml'}


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


def quantize_onnx(fp32: str | os.PathLike, out: str | os.PathLike,
                  batches: Sequence[Tensor]) -> None:
    """Static INT8 quantization (QDQ) of the ONNX graph ``fp32`` to ``out``, calibrated on
    ``batches`` (inputs of the graph's single input)."""
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
    """NNCF post-training INT8 quantization of the ONNX graph ``fp32``, read by OpenVINO,
    to the IR ``out`` (``.xml`` and ``.bin``), calibrated on ``batches``."""
    import nncf
    import openvino as ov

    model = ov.convert_model(os.fspath(fp32))
    dataset = nncf.Dataset(list(batches), lambda b: b.numpy())
    quantized = nncf.quantize(model, dataset, preset=nncf.QuantizationPreset.PERFORMANCE,
                              subset_size=len(batches))
    ov.save_model(quantized, os.fspath(out), compress_to_fp16=False)


def quantize_detector(detector: nn.Module, batches: Sequence[Tensor],
                      out: str | os.PathLike, runtime: str = 'onnxruntime') -> dict:
    """Fold ``detector`` (a copy), export its raw head outputs with dynamic batch, height
    and width, quantize to INT8 for ``runtime`` calibrated on ``batches``
    (:func:`calibration_batches`), and write the result to ``out`` (``.onnx`` for ONNX
    Runtime, ``.xml`` + ``.bin`` for OpenVINO) once everything has succeeded.

    Returns:
        ``path``, ``runtime`` and ``op_counts`` of the quantized model.
    """
    if runtime not in QUANTIZE_RUNTIMES:
        raise ValueError(f'runtime must be one of {tuple(QUANTIZE_RUNTIMES)}, got {runtime!r}')
    out = Path(out)
    if out.suffix != QUANTIZE_RUNTIMES[runtime]:
        raise ValueError(f'runtime {runtime!r} writes a {QUANTIZE_RUNTIMES[runtime]} file, got '
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
        if runtime == 'onnxruntime':
            quantize_onnx(fp32, staged, batches)
            op_counts = onnx_op_counts(staged)
            shutil.move(staged, out)
        else:
            quantize_openvino(fp32, staged, batches)
            op_counts = openvino_op_counts(staged)
            save_ir(staged, out)
    return dict(path=os.fspath(out), runtime=runtime, op_counts=op_counts)

