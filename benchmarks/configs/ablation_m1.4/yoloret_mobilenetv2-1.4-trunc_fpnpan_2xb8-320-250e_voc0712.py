# Table 4 at width 1.4, row "+ truncation": truncated MobileNetV2 x1.4 into the FPN/PAN
# path, no RFCR.
_base_ = '../../../configs/yoloret/yoloret_mobilenetv2-1.4_rfcr_2xb8-320-250e_voc0712.py'

model = dict(
    backbone=dict(out_strides=(8, 16, 32)),
    neck=[dict(type='YOLOReTNeck', in_channels=(48, 136, 224), out_channels=75)])
