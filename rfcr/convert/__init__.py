"""Keras weights -> PyTorch checkpoints (``rfcr-convert``). HDF5 is read with h5py: no
TensorFlow at run time. A conversion checks every layer's kind and shape and writes
nothing when anything does not fit.

- :func:`convert_keras_mobilenet_v2`: Keras applications' ImageNet MobileNetV2, any width,
  for ``init_cfg=dict(type='Pretrained', checkpoint=...)``.
- :func:`convert_official_yoloret`: the authors' YOLO-ReT checkpoints (MobileNetV2 and
  EfficientNet-B3 backbones), for the configs under ``configs/official/``.
"""
from .checkpoint import save_checkpoint
from .keras_h5 import KerasLayer, read_keras_h5
from .mobilenet_v2 import check_fits_backbone, convert_keras_mobilenet_v2
from .yoloret import (OFFICIAL_NECK_ORDER, backbone_graph_order, check_official_graph,
                      convert_official_yoloret, file_backbone)

__all__ = ['KerasLayer', 'OFFICIAL_NECK_ORDER', 'backbone_graph_order', 'check_fits_backbone',
           'check_official_graph', 'convert_keras_mobilenet_v2', 'convert_official_yoloret',
           'file_backbone', 'read_keras_h5', 'save_checkpoint']
