"""rfcr: YOLO-ReT's backbone truncation and RFCR neck for MMDetection.

``import rfcr`` (or ``custom_imports=dict(imports=['rfcr'])`` in a config) registers
rfcr's modules in mmdet's ``MODELS`` registry (``TruncatedMobileNetV2``, ``RFCR``,
``YOLOReTNeck``, ``YOLOReTHead``) and its hooks and wrappers in mmengine's.

Layers, each importing only those below it: ``tools`` -> ``analysis`` -> ``deploy`` ->
``models`` -> ``engine`` / ``utils``.
"""
from . import deploy, engine  # noqa: F401  (register hooks and wrappers)
from .models import RFCR, TruncatedMobileNetV2
from .version import __version__

__all__ = ['RFCR', 'TruncatedMobileNetV2', '__version__']
