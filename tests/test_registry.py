"""Building through mmdet's registry: directly, through a config file, and as a list neck."""
import textwrap

import torch
from mmengine.config import Config
from mmengine.optim import OptimWrapper

from mmdet.registry import MODELS
from mmdet.utils import register_all_modules


def test_build_after_import():
    import rfcr  # noqa: F401
    backbone = MODELS.build(dict(type='TruncatedMobileNetV2', widen_factor=0.75))
    neck = MODELS.build(dict(type='RFCR', in_channels=backbone.out_channels))
    assert type(backbone).__name__ == 'TruncatedMobileNetV2'
    assert type(neck).__name__ == 'RFCR'
    assert neck.out_channels == (120, 168, 216)


def test_build_from_config_with_custom_imports(tmp_path):
    cfg_file = tmp_path / 'model.py'
    cfg_file.write_text(textwrap.dedent("""
        custom_imports = dict(imports=['rfcr'], allow_failed_imports=False)
        backbone = dict(type='TruncatedMobileNetV2', widen_factor=1.4,
                        out_strides=(4, 8, 16, 32))
        neck = dict(type='RFCR', in_channels=(48, 136, 224), shortcut_channels=32)
    """))
    cfg = Config.fromfile(str(cfg_file))  # runs custom_imports
    backbone = MODELS.build(cfg.backbone)
    neck = MODELS.build(cfg.neck)
    outs = neck(backbone(torch.rand(1, 3, 96, 96)))
    assert [tuple(o.shape[1:]) for o in outs] == [(144, 12, 12), (232, 6, 6), (320, 3, 3)]


def test_list_neck_with_pafpn():
    register_all_modules()
    import rfcr  # noqa: F401
    backbone = MODELS.build(dict(type='TruncatedMobileNetV2', widen_factor=0.75))
    neck = MODELS.build([
        dict(type='RFCR', in_channels=(24, 72, 120)),
        dict(type='PAFPN', in_channels=[120, 168, 216], out_channels=64, num_outs=3),
    ])
    assert isinstance(neck, torch.nn.Sequential)
    outs = neck(backbone(torch.rand(1, 3, 321, 321)))
    assert [tuple(o.shape) for o in outs] == [(1, 64, 41, 41), (1, 64, 21, 21), (1, 64, 11, 11)]


def test_detector_with_list_neck_runs_end_to_end():
    register_all_modules()
    import rfcr  # noqa: F401
    from mmdet.structures import DetDataSample
    from mmengine.structures import InstanceData
    model = MODELS.build(dict(
        type='RetinaNet',
        data_preprocessor=dict(type='DetDataPreprocessor', mean=[0, 0, 0], std=[1, 1, 1]),
        backbone=dict(type='TruncatedMobileNetV2', widen_factor=0.5),
        neck=[dict(type='RFCR', in_channels=(16, 48, 80), collect_channels=16, fuse_channels=16),
              dict(type='PAFPN', in_channels=[32, 64, 96], out_channels=32, num_outs=3)],
        bbox_head=dict(
            type='RetinaHead', num_classes=2, in_channels=32, feat_channels=32, stacked_convs=1,
            anchor_generator=dict(type='AnchorGenerator', octave_base_scale=4,
                                  scales_per_octave=1, ratios=[1.0], strides=[8, 16, 32]),
            bbox_coder=dict(type='DeltaXYWHBBoxCoder'),
            loss_cls=dict(type='FocalLoss', use_sigmoid=True, loss_weight=1.0),
            loss_bbox=dict(type='L1Loss', loss_weight=1.0)),
        train_cfg=dict(assigner=dict(type='MaxIoUAssigner', pos_iou_thr=0.5, neg_iou_thr=0.4,
                                     min_pos_iou=0), allowed_border=-1, pos_weight=-1,
                       debug=False),
        test_cfg=dict(nms_pre=100, score_thr=0.0, nms=dict(type='nms', iou_threshold=0.5),
                      max_per_img=10)))
    sample = DetDataSample(metainfo=dict(img_shape=(97, 97), ori_shape=(97, 97),
                                         scale_factor=(1.0, 1.0), pad_shape=(97, 97)))
    sample.gt_instances = InstanceData(bboxes=torch.tensor([[10., 10., 50., 60.]]),
                                       labels=torch.tensor([1]))
    data = dict(inputs=[torch.randint(0, 255, (3, 97, 97), dtype=torch.uint8)],
                data_samples=[sample])
    model.train()
    optim_wrapper = OptimWrapper(torch.optim.SGD(model.parameters(), lr=0.01))
    losses = model.train_step(data, optim_wrapper)
    assert {'loss', 'loss_cls', 'loss_bbox'} <= set(losses), sorted(losses)
    assert all(torch.isfinite(v).all() for v in losses.values())
    model.eval()
    (result,) = model.test_step(data)
    assert result.pred_instances.bboxes.shape[1] == 4

