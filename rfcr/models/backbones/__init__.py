from .truncated_efficientnet import TruncatedEfficientNet
from .truncated_mobilenet_v2 import TruncatedMobileNetV2

__all__ = ['TruncatedEfficientNet', 'TruncatedMobileNetV2']
