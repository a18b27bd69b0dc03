# Table 4 at width 1.4 (what configs/ablation/ is at 0.75), for rfcr-bench's cost table.
# Row "baseline": configs/ablation's full-backbone row at width 1.4; mmdet's MobileNetV2
# scales its conv2 (the stride-32 tap) to 1792 channels for widen_factor > 1.
_base_ = ('../../../configs/ablation/'
          'yoloret_mobilenetv2-0.75-full_fpnpan_2xb8-320-250e_voc0712.py')

model = dict(
    backbone=dict(widen_factor=1.4,
                  init_cfg=dict(checkpoint='checkpoints/mobilenet_v2_x1.4_imagenet.pth')),
    neck=[dict(type='YOLOReTNeck', in_channels=(48, 136, 1792), out_channels=75)])
