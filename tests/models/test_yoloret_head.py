"""YOLOReTHead's post-processing: ``test_cfg.clip_to_image`` (the official ``yolo_eval``
clips boxes to the image) on the official config, through mmdet's own inference API
(``init_detector`` / ``inference_detector``: its test pipeline, Letterbox, rescale=True),
and through an exported model (ExportedDetector decodes with the config's head)."""
from pathlib import Path

import numpy as np
import pytest
import torch
from mmengine.config import ConfigDict
from mmengine.structures import InstanceData
from torch import nn

from mmdet.apis import inference_detector, init_detector
from rfcr.deploy.export import export_onnx
from rfcr.deploy.exported import ExportedDetector
from rfcr.models import YOLOReTHead

ROOT = Path(__file__).resolve().parents[2]
OFFICIAL = ROOT / 'configs/official/yoloret_mobilenetv2-0.75_rfcr_official-320_voc0712.py'
W, H = 500, 375  # a VOC-sized image: letterboxed into 320x320 at 0.64, 40 px bands


def oversized(head: YOLOReTHead) -> None:
    """Prediction convs that ignore their input: every anchor finds class 0 (objectness and
    class probability 0.98) in a box e^2 = 7.4 times its anchor, centred on its cell: up to
    2760 px in the 320 input, 4300 px in the image."""
    with torch.no_grad():
        for conv in head.convs_pred:
            conv.weight.zero_()
            bias = conv.bias.view(head.num_base_priors, head.num_attrib)
            bias.fill_(-4.0)
            bias[:, :2] = 0.0
            bias[:, 2:4] = 2.0
            bias[:, 4:6] = 4.0


@pytest.fixture(scope='module')
def official():
    model = init_detector(str(OFFICIAL), device='cpu')  # random weights: none are read
    oversized(model.bbox_head)
    image = np.random.default_rng(0).integers(0, 256, (H, W, 3), np.uint8)
    return model, image


def _detect(model, image, clip: bool):
    model.bbox_head.test_cfg.clip_to_image = clip
    try:
        return inference_detector(model, image)
    finally:
        model.bbox_head.test_cfg.clip_to_image = True


def _inside(boxes: torch.Tensor) -> bool:
    return bool((boxes >= 0).all() and (boxes[:, 0::2] <= W).all()
                and (boxes[:, 1::2] <= H).all())


def test_official_config_clips_boxes_to_the_image(official):
    model, image = official
    assert model.bbox_head.test_cfg.clip_to_image is True  # the config turns it on
    on, off = _detect(model, image, True), _detect(model, image, False)
    assert on.metainfo['ori_shape'] == (H, W) and on.metainfo['pad_param'].tolist() == [
        40, 40, 0, 0]
    raw = off.pred_instances.bboxes
    assert len(raw) > 0 and raw.min() < -1000 and raw.max() > W + 1000  # far outside
    boxes = on.pred_instances.bboxes
    assert len(boxes) > 0 and _inside(boxes)
    assert (boxes[:, :2] == 0).any() and (boxes[:, 2] == W).any() and (boxes[:, 3] == H).any()


def test_clipping_happens_in_image_pixels_before_nms(official):
    """Without NMS, the clipped boxes are the unclipped ones clamped to [0, W] x [0, H];
    with ``rescale=False`` they are the same boxes in input pixels, clamped to where the
    image lies in the letterboxed input."""
    model, image = official
    meta = _detect(model, image, True).metainfo
    head = model.bbox_head
    with torch.no_grad():
        (maps, ) = model(torch.zeros(1, 3, 320, 320), mode='tensor')

    def boxes(clip: bool, rescale: bool) -> torch.Tensor:
        cfg = ConfigDict({**head.test_cfg, 'clip_to_image': clip})
        (result, ) = head.predict_by_feat([m.clone() for m in maps], [meta], cfg=cfg,
                                          rescale=rescale, with_nms=False)
        return result.bboxes

    raw, clipped = boxes(False, True), boxes(True, True)
    assert len(raw) == 10 * 10 * 3 + 20 * 20 * 3 + 40 * 40 * 3  # every anchor
    assert not _inside(raw)
    torch.testing.assert_close(clipped, raw.clamp(
        min=torch.zeros(4), max=torch.tensor([W, H, W, H], dtype=torch.float32)))
    sx, sy = meta['scale_factor']
    top, left = meta['pad_param'][0], meta['pad_param'][2]
    in_input = boxes(True, False)
    torch.testing.assert_close(in_input, clipped * torch.tensor([sx, sy, sx, sy]) +
                               torch.tensor([left, top, left, top], dtype=torch.float32))
    assert in_input[:, 1::2].min() == top and in_input[:, 1::2].max() == top + H * sy


def test_exported_detector_clips_as_the_config_says(official, tmp_path):
    """An exported model's boxes come from the config's head: clipped too."""
    model, image = official
    head = model.bbox_head

    class RawMaps(nn.Module):  # images -> the oversized head's maps, at strides 32, 16, 8
        def __init__(self):
            super().__init__()
            self.levels = nn.ModuleList()
            for stride, conv in zip(head.featmap_strides, head.convs_pred):
                pred = nn.Conv2d(3, conv.out_channels, 1)
                pred.weight.data.zero_()
                pred.bias.data.copy_(conv.bias)
                self.levels.append(nn.Sequential(nn.AvgPool2d(stride), pred))

        def forward(self, x):
            return tuple(level(x) for level in self.levels)

    path = tmp_path / 'raw.onnx'
    export_onnx(RawMaps(), (torch.zeros(1, 3, 320, 320), ), path)
    exported = ExportedDetector(detector=model.cfg.model, path=path, threads=1)
    exported.cfg = model.cfg  # what inference_detector reads the test pipeline from
    result = inference_detector(exported, image)
    expected = _detect(model, image, True).pred_instances
    assert _inside(result.pred_instances.bboxes)
    torch.testing.assert_close(result.pred_instances.bboxes, expected.bboxes, atol=1e-3,
                               rtol=0)
    torch.testing.assert_close(result.pred_instances.labels, expected.labels)


def test_clip_to_image_is_checked():
    with pytest.raises(ValueError, match=r"test_cfg\.clip_to_image must be True or False, "
                                         r"got 'yes'"):
        YOLOReTHead(num_classes=2, in_channels=(7, 7, 7), test_cfg=dict(clip_to_image='yes'))
    head = YOLOReTHead(num_classes=2, in_channels=(7, 7, 7),
                       test_cfg=dict(clip_to_image=True, max_per_img=10))
    results = InstanceData(bboxes=torch.tensor([[-5., -5., 50., 50.]]), scores=torch.ones(1),
                           labels=torch.zeros(1, dtype=torch.long))
    with pytest.raises(ValueError, match=r"needs ori_shape and scale_factor in img_meta, got "
                                         r"keys \['img_shape'\]"):
        head._bbox_post_process(results, head.test_cfg, rescale=False, with_nms=False,
                                img_meta=dict(img_shape=(32, 32)))
