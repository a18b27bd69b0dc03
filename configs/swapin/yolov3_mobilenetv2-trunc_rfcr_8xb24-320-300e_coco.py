# mmdet's yolov3_mobilenetv2_8xb24-320-300e_coco with YOLO-ReT's swap: the backbone truncated
# (no 320 / 1280 blocks; taps 32 / 96 / 160) and RFCR inserted before YOLOV3Neck, whose
# in_channels follow RFCR's out_channels (160+96, 96+96, 32+96; YOLOV3Neck takes stride 32 first).
_base_ = 'mmdet::yolo/yolov3_mobilenetv2_8xb24-320-300e_coco.py'
custom_imports = dict(imports=['rfcr'], allow_failed_imports=False)

model = dict(
    backbone=dict(
        _delete_=True,
        type='TruncatedMobileNetV2',
        out_strides=(8, 16, 32),
        act_cfg=dict(type='LeakyReLU', negative_slope=0.1),
        init_cfg=dict(type='Pretrained',
                      checkpoint='https://download.pytorch.org/models/mobilenet_v2-b0353104.pth')),
    neck=[
        dict(type='RFCR', in_channels=(32, 96, 160)),
        dict(type='YOLOV3Neck', num_scales=3, in_channels=[256, 192, 128],
             out_channels=[96, 96, 96]),
    ])
