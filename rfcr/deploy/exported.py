"""An exported detector (ONNX or OpenVINO file, FP32 or INT8) inside mmdet's test loop.

``rfcr-test CONFIG MODEL.onnx|MODEL.xml`` replaces the config's model with
``dict(type='ExportedDetector', detector=<the config's model>, path=MODEL)``: mmengine's
Runner, the config's test dataloader and mmdet's evaluator (CocoMetric) run as for a
checkpoint. The file computes the raw head outputs of the preprocessed batch; the config's
own head decodes them and runs NMS (``bbox_head.predict_by_feat``), as
``SingleStageDetector.predict`` does after its forward pass.
"""
from __future__ import annotations

import os
from typing import Any, Optional, Sequence

import numpy as np
import torch
from mmengine.model import BaseModel
from torch import Tensor

from mmdet.registry import MODELS

from ..utils.config import without_pretrained
from .runtime import load_exported

__all__ = ['ExportedDetector']


def _structure(outputs: Any) -> Any:
    """The nesting of tuples / lists of tensors in ``outputs``; ``None`` for a tensor."""
    if torch.is_tensor(outputs):
        return None
    return type(outputs), [_structure(o) for o in outputs]


def _rebuild(structure: Any, flat: list[Tensor]) -> Any:
    """``flat`` (consumed from the front) nested as ``structure``."""
    if structure is None:
        return flat.pop(0)
    kind, items = structure
    return kind(_rebuild(s, flat) for s in items)


@MODELS.register_module()
class ExportedDetector(BaseModel):
    """A single-stage detector whose forward pass runs in an exported model file.

    Args:
        detector: The config's model (a dict): built with random weights (nothing is
            loaded) for its ``data_preprocessor`` and its head's decoding and NMS; its
            layers do not run, except once on one image to learn how the head nests its
            outputs.
        path: The exported file (``rfcr-export``, ``rfcr-quantize``): input the
            preprocessed batch, outputs the head's raw maps flattened.
        runtime: One of :data:`~rfcr.deploy.runtime.FILE_RUNTIMES` (``'onnxruntime'``,
            ``'openvino'``); by default the one that writes such files (ONNX Runtime for
            ``.onnx``, OpenVINO for ``.xml``).
        threads: The runtime's intra-op threads (its default when ``None``).

    Example:
        >>> # rfcr-test does this for a .onnx / .xml model
        >>> cfg.model = dict(type='ExportedDetector', detector=cfg.model,
        ...                  path='yoloret_int8.onnx')  # doctest: +SKIP
    """

    def __init__(self, detector: dict, path: str | os.PathLike,
                 runtime: Optional[str] = None, threads: Optional[int] = None) -> None:
        model = MODELS.build(without_pretrained(detector))
        model.eval()
        if not hasattr(getattr(model, 'bbox_head', None), 'predict_by_feat'):
            raise ValueError(f'detector={detector.get("type")!r}: an exported model is '
                             'decoded by a single-stage bbox_head with predict_by_feat')
        super().__init__(data_preprocessor=model.data_preprocessor)
        self.detector = model
        self.exported = load_exported(path, runtime, threads)
        self._structure = None

    def _raw_outputs(self, inputs: Tensor) -> Any:
        shape = self.exported.input_shapes[0]
        if shape[0] is not None and shape[0] != inputs.shape[0]:
            # A graph exported for a fixed batch size: one call per slice of that size.
            chunks = [self.exported(x) for x in inputs.split(shape[0])]
            flat = [np.concatenate(outs) for outs in zip(*chunks)]
        else:
            flat = self.exported(inputs)
        if self._structure is None:
            with torch.no_grad():
                self._structure = _structure(self.detector(inputs[:1], mode='tensor'))
        return _rebuild(self._structure, [torch.from_numpy(np.asarray(o)) for o in flat])

    def forward(self, inputs: Tensor, data_samples: Optional[Sequence] = None,
                mode: str = 'tensor') -> Any:
        outs = self._raw_outputs(inputs)
        if mode == 'tensor':
            return outs
        if mode == 'predict':
            results = self.detector.bbox_head.predict_by_feat(
                *outs, batch_img_metas=[s.metainfo for s in data_samples], rescale=True)
            return self.detector.add_pred_to_datasample(data_samples, results)
        raise ValueError(f"mode must be 'tensor' or 'predict' (an exported model does not "
                         f'train), got {mode!r}')
