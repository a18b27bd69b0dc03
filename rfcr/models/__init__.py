"""Registered modules: importing this package adds them to mmdet's ``MODELS`` registry."""
from .backbones import TruncatedEfficientNet, TruncatedMobileNetV2
from .dense_heads import YOLOReTHead
from .necks import RFCR, YOLOReTNeck

__all__ = ['TruncatedEfficientNet', 'TruncatedMobileNetV2', 'RFCR', 'YOLOReTNeck', 'YOLOReTHead']
