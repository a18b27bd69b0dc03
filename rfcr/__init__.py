"""rfcr: YOLO-ReT's backbone truncation and RFCR neck for MMDetection.

``import rfcr`` (or ``custom_imports=dict(imports=['rfcr'])`` in a config) registers
rfcr's modules in mmdet's ``MODELS`` registry (``TruncatedMobileNetV2``, ``RFCR``,
``YOLOReTNeck``, ``YOLOReTHead``), its ``Letterbox`` transform in ``TRANSFORMS`` and its
hooks and wrappers in mmengine's. It also lets ``torch.load(weights_only=True)``, torch's
default, read the checkpoints mmengine's Runner writes, so that mmdet's own
``tools/test.py`` and ``--resume`` work: exactly the objects those hold are allowed, for
the whole process (:func:`rfcr.utils.checkpoint.allow_mmengine_checkpoints`).

Layers, each importing only those below it: ``tools`` -> ``analysis`` -> ``deploy`` /
``convert`` -> ``models`` / ``datasets`` -> ``engine`` -> ``utils``.
"""
from . import datasets, deploy, engine  # noqa: F401  (register transforms, hooks, wrappers)
from .models import RFCR, TruncatedMobileNetV2
from .utils.checkpoint import allow_mmengine_checkpoints
from .version import __version__

allow_mmengine_checkpoints()

__all__ = ['RFCR', 'TruncatedMobileNetV2', '__version__']
