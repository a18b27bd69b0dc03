# Table 4 at width 1.4, row "+ RFCR": the full MobileNetV2 x1.4 (1792-channel stride-32 tap)
# with RFCR.
_base_ = './yoloret_mobilenetv2-1.4-full_fpnpan_2xb8-320-250e_voc0712.py'

model = dict(neck=[
    dict(type='RFCR', in_channels=(48, 136, 1792)),
    dict(type='YOLOReTNeck', in_channels=(144, 232, 1888), out_channels=75),
])
