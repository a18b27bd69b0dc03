"""Data: the official YOLO-ReT test-time ``Letterbox`` (registered in mmdet's
``TRANSFORMS``) and the synthetic dataset generator (``rfcr-make-data``)."""
from .transforms import Letterbox

__all__ = ['Letterbox']
