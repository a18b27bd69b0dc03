from .rfcr import RFCR
from .yoloret_neck import YOLOReTNeck

__all__ = ['RFCR', 'YOLOReTNeck']
