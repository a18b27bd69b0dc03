"""rfcr: YOLO-ReT's backbone truncation and RFCR neck for MMDetection.

``import rfcr`` (or ``custom_imports=dict(imports=['rfcr'])`` in a config) registers
rfcr's modules in mmdet's ``MODELS`` registry (``TruncatedMobileNetV2``, ``RFCR``,
``YOLOReTNeck``, ``YOLOReTHead``), its ``Letterbox`` transform in ``TRANSFORMS`` and its
hooks and wrappers in mmengine's.

Layers, each importing only those below it: ``tools`` -> ``analysis`` -> ``deploy`` /
``convert`` -> ``models`` / ``datasets`` -> ``engine`` -> ``utils``.
"""
from . import datasets, deploy, engine  # noqa: F401  (register transforms, hooks, wrappers)
from .models import RFCR, TruncatedMobileNetV2
from .version import __version__

__all__ = ['RFCR', 'TruncatedMobileNetV2', '__version__']
