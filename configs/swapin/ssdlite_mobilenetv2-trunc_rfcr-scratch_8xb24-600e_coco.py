# mmdet's ssdlite_mobilenetv2-scratch_8xb24-600e_coco with YOLO-ReT's swap: the backbone
# truncated (the 1280-channel map SSDLite used at stride 32 is gone; taps 32 / 96 / 160) and
# RFCR inserted, returning its stride-16 and stride-32 outputs (96+96, 160+96) to SSDNeck.
_base_ = 'mmdet::ssd/ssdlite_mobilenetv2-scratch_8xb24-600e_coco.py'
custom_imports = dict(imports=['rfcr'], allow_failed_imports=False)

model = dict(
    backbone=dict(
        _delete_=True,
        type='TruncatedMobileNetV2',
        out_strides=(8, 16, 32),
        norm_cfg=dict(type='BN', eps=0.001, momentum=0.03),
        init_cfg=dict(type='TruncNormal', layer='Conv2d', std=0.03)),
    neck=[
        dict(type='RFCR', in_channels=(32, 96, 160), out_indices=(1, 2),
             norm_cfg=dict(type='BN', eps=0.001, momentum=0.03)),
        dict(type='SSDNeck',
             in_channels=(192, 256),
             out_channels=(192, 256, 512, 256, 256, 128),
             level_strides=(2, 2, 2, 2),
             level_paddings=(1, 1, 1, 1),
             l2_norm_scale=None,
             use_depthwise=True,
             norm_cfg=dict(type='BN', eps=0.001, momentum=0.03),
             act_cfg=dict(type='ReLU6'),
             init_cfg=dict(type='TruncNormal', layer='Conv2d', std=0.03)),
    ],
    bbox_head=dict(in_channels=(192, 256, 512, 256, 256, 128)))
