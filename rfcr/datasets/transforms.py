"""Data transforms registered in mmdet's ``TRANSFORMS``."""
from __future__ import annotations

from typing import Sequence

import mmcv
import numpy as np
from mmcv.transforms import BaseTransform

from mmdet.registry import TRANSFORMS


@TRANSFORMS.register_module()
class Letterbox(BaseTransform):
    """Resize keeping the aspect ratio to fit ``scale``, then pad to ``scale`` with the image
    centred: the official YOLO-ReT test-time input (``letterbox_image`` in prakharg24/yoloret
    ``code/yolo3/utils.py``). mmdet's ``Resize`` + ``Pad`` pad at the bottom/right only.

    As the official code: the resized size is truncated (``int(side * ratio)``), the resize
    is bilinear on the float image (no rounding back to uint8), and the padding is centred
    (``(scale - size) // 2`` before) with ``pad_val``. The image becomes float32.

    Results: ``img``, ``img_shape`` = ``scale``, ``scale_factor`` (w, h) and
    ``pad_param`` = ``[top, bottom, left, right]`` (mmyolo's key), which
    :class:`~rfcr.models.YOLOReTHead` subtracts from its boxes before rescaling them;
    ``gt_bboxes`` are scaled and shifted alike.

    Args:
        scale: ``(width, height)`` of the output, or one int for a square.
        pad_val: The padding value (the official code pads with 0: black).
        interpolation: mmcv's interpolation of the resize.

    Example:
        >>> import numpy as np
        >>> from rfcr.datasets import Letterbox
        >>> out = Letterbox(scale=320)(dict(img=np.zeros((375, 500, 3), np.uint8)))
        >>> out['img'].shape, out['scale_factor'], out['pad_param'].tolist()
        ((320, 320, 3), (0.64, 0.64), [40.0, 40.0, 0.0, 0.0])
    """

    def __init__(self, scale: int | Sequence[int], pad_val: float = 0,
                 interpolation: str = 'bilinear') -> None:
        scale = (scale, scale) if isinstance(scale, int) else tuple(scale)
        if len(scale) != 2 or any(isinstance(s, bool) or not isinstance(s, int) or s <= 0
                                  for s in scale):
            raise ValueError(f'scale must be a positive int or (width, height), got {scale!r}')
        self.scale = scale
        self.pad_val = pad_val
        self.interpolation = interpolation

    def transform(self, results: dict) -> dict:
        img = results['img']
        h, w = img.shape[:2]
        out_w, out_h = self.scale
        ratio = min(out_w / w, out_h / h)
        new_w, new_h = int(w * ratio), int(h * ratio)
        resized = mmcv.imresize(img.astype(np.float32), (new_w, new_h),
                                interpolation=self.interpolation)
        top, left = (out_h - new_h) // 2, (out_w - new_w) // 2
        out = np.full((out_h, out_w) + img.shape[2:], self.pad_val, dtype=np.float32)
        out[top:top + new_h, left:left + new_w] = resized.reshape(
            (new_h, new_w) + img.shape[2:])
        scale_factor = (new_w / w, new_h / h)

        results['img'] = out
        results['img_shape'] = (out_h, out_w)
        results['scale_factor'] = scale_factor
        results['keep_ratio'] = True
        results['pad_param'] = np.array(
            [top, out_h - new_h - top, left, out_w - new_w - left], dtype=np.float32)
        if results.get('gt_bboxes') is not None:
            results['gt_bboxes'].rescale_(scale_factor)
            results['gt_bboxes'].translate_([left, top])
        return results

    def __repr__(self) -> str:
        return (f'{type(self).__name__}(scale={self.scale}, pad_val={self.pad_val}, '
                f'interpolation={self.interpolation!r})')
