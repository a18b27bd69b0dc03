# Table 4, row "+ shortcut": truncation + RFCR + the shallow stride-4 shortcut into RFCR
# (max-pooled 4x4 before its 1x1 collect conv): the released YOLO-ReT-M0.75, which
# configs/yoloret/ builds too; spelled out here so the row reads on its own.
_base_ = '../yoloret/yoloret_mobilenetv2-0.75_rfcr_2xb8-320-250e_voc0712.py'

model = dict(
    backbone=dict(out_strides=(4, 8, 16, 32)),
    neck=[
        dict(type='RFCR', in_channels=(24, 72, 120), shortcut_channels=24),
        dict(type='YOLOReTNeck', in_channels=(120, 168, 216), out_channels=75),
    ])
