from .truncated_mobilenet_v2 import TruncatedMobileNetV2

__all__ = ['TruncatedMobileNetV2']
