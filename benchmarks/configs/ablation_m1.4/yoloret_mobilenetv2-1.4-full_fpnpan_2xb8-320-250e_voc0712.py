# Table 4 at width 1.4 (what configs/ablation/ is at 0.75), for rfcr-bench's cost table.
# Row "baseline": the full MobileNetV2 x1.4 (mmdet's; stride-32 tap = the 1792-channel
# conv2, mmdet scales it by widen_factor > 1) into the YOLO-ReT FPN/PAN path.
_base_ = '../../../configs/yoloret/yoloret_mobilenetv2-1.4_rfcr_2xb8-320-250e_voc0712.py'

model = dict(
    backbone=dict(_delete_=True, type='MobileNetV2', widen_factor=1.4, out_indices=(2, 4, 7),
                  init_cfg=dict(type='Pretrained',
                                checkpoint='checkpoints/mobilenet_v2_x1.4_imagenet.pth')),
    neck=[dict(type='YOLOReTNeck', in_channels=(48, 136, 1792), out_channels=75)])
