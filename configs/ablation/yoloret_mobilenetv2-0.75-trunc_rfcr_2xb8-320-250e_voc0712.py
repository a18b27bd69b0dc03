# Table 4, row "truncation + RFCR": YOLO-ReT-M0.75 without the stride-4 shortcut (RFCR
# collects strides 8, 16, 32 only).
_base_ = '../yoloret/yoloret_mobilenetv2-0.75_rfcr_2xb8-320-250e_voc0712.py'

model = dict(
    backbone=dict(out_strides=(8, 16, 32)),
    neck=[
        dict(type='RFCR', in_channels=(24, 72, 120)),
        dict(type='YOLOReTNeck', in_channels=(120, 168, 216), out_channels=75),
    ])
