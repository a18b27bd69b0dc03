"""Letterbox (the official YOLO-ReT test input) and the head undoing it. Letterbox's
pixels against the official code (TensorFlow) are in tests/convert/."""
import cv2
import numpy as np
import pytest
import torch
from mmengine.config import ConfigDict
from mmengine.structures import InstanceData

from mmdet.registry import TRANSFORMS
from mmdet.structures.bbox import HorizontalBoxes
from rfcr.datasets import Letterbox
from rfcr.models import YOLOReTHead


@pytest.mark.parametrize('h, w', [(375, 500), (500, 333), (100, 100), (321, 123)])
def test_geometry(h, w):
    img = np.random.default_rng(0).integers(0, 256, (h, w, 3), np.uint8)
    box = [10., 20., 60., 90.]
    out = TRANSFORMS.build(dict(type='Letterbox', scale=320))(
        dict(img=img, gt_bboxes=HorizontalBoxes(torch.tensor([box]))))
    ratio = min(320 / w, 320 / h)
    nw, nh = int(w * ratio), int(h * ratio)  # truncated, as the official letterbox_image
    top, left = (320 - nh) // 2, (320 - nw) // 2
    assert out['img'].shape == (320, 320, 3) and out['img'].dtype == np.float32
    assert out['img_shape'] == (320, 320)
    assert out['pad_param'].tolist() == [top, 320 - nh - top, left, 320 - nw - left]
    assert out['scale_factor'] == (nw / w, nh / h)
    inside = out['img'][top:top + nh, left:left + nw]
    np.testing.assert_allclose(inside, cv2.resize(img.astype(np.float32), (nw, nh)), atol=1e-4)
    outside = np.ones((320, 320), bool)
    outside[top:top + nh, left:left + nw] = False
    assert (out['img'][outside] == 0).all()
    sx, sy = out['scale_factor']
    expected = [box[0] * sx + left, box[1] * sy + top, box[2] * sx + left, box[3] * sy + top]
    torch.testing.assert_close(out['gt_bboxes'].tensor[0], torch.tensor(expected))


def test_head_maps_boxes_back_to_the_original_image():
    """A box the model predicts in the letterboxed input comes out where it was drawn."""
    original = torch.tensor([[33., 41., 210., 170.], [0., 0., 123., 321.]])
    out = Letterbox(320)(dict(img=np.zeros((321, 123, 3), np.uint8),
                              gt_bboxes=HorizontalBoxes(original.clone())))
    head = YOLOReTHead(num_classes=2, in_channels=(7, 7, 7))
    results = InstanceData(bboxes=out['gt_bboxes'].tensor, scores=torch.ones(2),
                           labels=torch.zeros(2, dtype=torch.long))
    meta = dict(scale_factor=out['scale_factor'], pad_param=out['pad_param'])
    cfg = ConfigDict(min_bbox_size=0, max_per_img=10)
    back = head._bbox_post_process(results, cfg, rescale=True, with_nms=False, img_meta=meta)
    torch.testing.assert_close(back.bboxes, original)
    # Without pad_param (mmdet's Resize + Pad at the bottom/right), boxes only rescale.
    results.bboxes = original * 2
    back = head._bbox_post_process(results, cfg, rescale=True, with_nms=False,
                                   img_meta=dict(scale_factor=(2.0, 2.0)))
    torch.testing.assert_close(back.bboxes, original)


@pytest.mark.parametrize('scale', [0, (320, ), (320.0, 320), True])
def test_bad_scale(scale):
    with pytest.raises(ValueError, match='scale must be a positive int or'):
        Letterbox(scale)
