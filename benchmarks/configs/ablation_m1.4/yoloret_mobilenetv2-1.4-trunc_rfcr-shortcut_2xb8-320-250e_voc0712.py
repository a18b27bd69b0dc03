# Table 4 at width 1.4, row "+ shortcut": truncation + RFCR + the shallow stride-4 shortcut
# into RFCR (32 channels at x1.4, max-pooled 4x4 before its 1x1 collect conv).
_base_ = '../../../configs/yoloret/yoloret_mobilenetv2-1.4_rfcr_2xb8-320-250e_voc0712.py'

model = dict(
    backbone=dict(out_strides=(4, 8, 16, 32)),
    neck=[
        dict(type='RFCR', in_channels=(48, 136, 224), shortcut_channels=32),
        dict(type='YOLOReTNeck', in_channels=(144, 232, 320), out_channels=75),
    ])
