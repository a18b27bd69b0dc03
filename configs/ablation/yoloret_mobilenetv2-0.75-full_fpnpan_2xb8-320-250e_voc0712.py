# Table 4, row "baseline": the full MobileNetV2 x0.75 (mmdet's, stride-32 tap = the
# 1280-channel conv) straight into the YOLO-ReT FPN/PAN path; no truncation, no RFCR.
# Keras' ImageNet weights need Keras' numerics, which mmdet's MobileNetV2 gets as mmdet's
# EfficientNet does: every conv pads TensorFlow's "SAME" (Conv2dAdaptivePadding; the same as
# symmetric padding for its stride-1 convs) and BN eps is 1e-3.
_base_ = '../yoloret/yoloret_mobilenetv2-0.75_rfcr_2xb8-320-250e_voc0712.py'

model = dict(
    backbone=dict(_delete_=True, type='MobileNetV2', widen_factor=0.75, out_indices=(2, 4, 7),
                  conv_cfg=dict(type='Conv2dAdaptivePadding'),
                  norm_cfg=dict(type='BN', eps=1e-3),
                  init_cfg=dict(type='Pretrained',
                                checkpoint='checkpoints/mobilenet_v2_x0.75_imagenet.pth')),
    neck=[dict(type='YOLOReTNeck', in_channels=(24, 72, 1280), out_channels=75)])
# mmdet's MobileNetV2 freezes layer1..layer7 at most; its 1280-channel conv2 stays trainable.
custom_hooks = [dict(type='FreezeBackboneHook', unfreeze_epoch=100, frozen_stages=7)]
