"""Registered modules: importing this package adds them to mmdet's ``MODELS`` registry."""
from .backbones import TruncatedMobileNetV2
from .dense_heads import YOLOReTHead
from .necks import RFCR, YOLOReTNeck

__all__ = ['TruncatedMobileNetV2', 'RFCR', 'YOLOReTNeck', 'YOLOReTHead']
