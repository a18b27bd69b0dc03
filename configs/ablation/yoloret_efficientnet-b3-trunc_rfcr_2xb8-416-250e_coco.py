# Table 4-style row "truncation + RFCR" at EfficientNet-B3 (COCO, 416): the truncated
# EfficientNet-B3 (no 384-channel last stage, no 1536 conv) with RFCR on strides 8, 16, 32,
# without the stride-4 shortcut that YOLO-ReT-EB3 (configs/yoloret/) adds.
# Pair: ./yoloret_efficientnet-b3-full_fpnpan_*.
_base_ = '../yoloret/yoloret_efficientnet-b3_rfcr_2xb8-416-250e_coco.py'

model = dict(
    backbone=dict(out_strides=(8, 16, 32)),
    neck=[
        dict(type='RFCR', in_channels=(48, 136, 232)),
        dict(type='YOLOReTNeck', in_channels=(144, 232, 328), out_channels=255),
    ])
