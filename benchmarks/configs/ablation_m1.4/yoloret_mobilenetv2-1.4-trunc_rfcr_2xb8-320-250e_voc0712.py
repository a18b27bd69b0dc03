# Table 4 at width 1.4, row "truncation + RFCR": YOLO-ReT-M1.4 without the stride-4
# shortcut (RFCR collects strides 8, 16, 32 only).
_base_ = '../../../configs/yoloret/yoloret_mobilenetv2-1.4_rfcr_2xb8-320-250e_voc0712.py'

model = dict(
    backbone=dict(out_strides=(8, 16, 32)),
    neck=[
        dict(type='RFCR', in_channels=(48, 136, 224)),
        dict(type='YOLOReTNeck', in_channels=(144, 232, 320), out_channels=75),
    ])
