"""rfcr: YOLO-ReT's backbone truncation and RFCR neck for MMDetection.

``import rfcr`` (or ``custom_imports=dict(imports=['rfcr'])`` in a config) registers
``TruncatedMobileNetV2`` and ``RFCR`` in mmdet's ``MODELS`` registry.
"""
from . import engine  # noqa: F401  (registers hooks and model wrappers)
from .models import RFCR, TruncatedMobileNetV2
from .version import __version__

__all__ = ['RFCR', 'TruncatedMobileNetV2', '__version__']
