# YOLO-ReT-M0.75 for the 20 Pascal VOC classes: the nodes project to 3 * (20 + 5) channels.
_base_ = './yoloret_mobilenetv2-0.75_coco.py'

num_classes = 20
pred_channels = 75
model = dict(
    neck=[
        dict(type='RFCR', in_channels=(24, 72, 120), shortcut_channels=24, collect_channels=48,
             fuse_channels=96),
        dict(type='YOLOReTNeck', in_channels=(120, 168, 216), out_channels=pred_channels),
    ],
    bbox_head=dict(num_classes=num_classes, in_channels=[pred_channels] * 3))
