# YOLO-ReT-M1.4: MobileNetV2 x1.4 truncated (taps 48 / 136 / 224 channels).
_base_ = './yoloret_mobilenetv2-0.75_coco.py'

model = dict(
    backbone=dict(
        widen_factor=1.4,
        init_cfg=dict(type='Pretrained', checkpoint='checkpoints/mobilenet_v2_x1.4_imagenet.pth')),
    neck=[
        dict(type='RFCR', in_channels=(48, 136, 224), collect_channels=48, fuse_channels=96),
        dict(type='YOLOReTNeck', in_channels=(144, 232, 320), out_channels=255),
    ])
