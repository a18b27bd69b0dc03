from .yoloret_head import YOLOReTHead

__all__ = ['YOLOReTHead']
