# YOLO-ReT-M1.4 for the 20 Pascal VOC classes.
_base_ = './yoloret_mobilenetv2-1.4_coco.py'

model = dict(
    neck=[
        dict(type='RFCR', in_channels=(48, 136, 224), shortcut_channels=32, collect_channels=48,
             fuse_channels=96),
        dict(type='YOLOReTNeck', in_channels=(144, 232, 320), out_channels=75),
    ],
    bbox_head=dict(num_classes=20, in_channels=[75, 75, 75]))
