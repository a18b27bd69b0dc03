# Table 4-style baseline at EfficientNet-B3 (COCO, 416): the full EfficientNet-B3 (mmdet's;
# stride-32 tap = the 1536-channel 1x1 conv after the 384-channel last stage) straight into
# the YOLO-ReT FPN/PAN path; no truncation, no RFCR. Pair: ./yoloret_efficientnet-b3-trunc_rfcr_*.
_base_ = '../yoloret/yoloret_efficientnet-b3_rfcr_2xb8-416-250e_coco.py'

model = dict(
    backbone=dict(_delete_=True, type='EfficientNet', arch='b3', out_indices=(3, 4, 6),
                  norm_cfg=dict(type='BN', eps=1e-3, momentum=0.01), drop_path_rate=0.2,
                  init_cfg=dict(type='Pretrained', prefix='backbone.', checkpoint='checkpoints/'
                                'efficientnet-b3_3rdparty_8xb32-aa_in1k_20220119-5b4887a0.pth')),
    neck=[dict(type='YOLOReTNeck', in_channels=(48, 136, 1536), out_channels=255)])
# Phase 1 freezes all 7 modules of mmdet's EfficientNet (stem, 5 stages, the 1536 conv).
custom_hooks = [dict(type='FreezeBackboneHook', unfreeze_epoch={{_base_.unfreeze_epoch}},
                     frozen_stages=7)]
