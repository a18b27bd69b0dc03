# Table 4, row "+ truncation": truncated MobileNetV2 x0.75 into the FPN/PAN path, no RFCR.
_base_ = '../yoloret/yoloret_mobilenetv2-0.75_rfcr_2xb8-320-250e_voc0712.py'

model = dict(
    backbone=dict(out_strides=(8, 16, 32)),
    neck=[dict(type='YOLOReTNeck', in_channels=(24, 72, 120), out_channels=75)])
