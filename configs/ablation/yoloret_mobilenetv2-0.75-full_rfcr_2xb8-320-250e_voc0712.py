# Table 4, row "+ RFCR": the full MobileNetV2 x0.75 (1280-channel stride-32 tap) with RFCR.
_base_ = './yoloret_mobilenetv2-0.75-full_fpnpan_2xb8-320-250e_voc0712.py'

model = dict(neck=[
    dict(type='RFCR', in_channels=(24, 72, 1280)),
    dict(type='YOLOReTNeck', in_channels=(120, 168, 1376), out_channels=75),
])
