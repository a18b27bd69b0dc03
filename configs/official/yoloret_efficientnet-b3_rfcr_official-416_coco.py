# The authors' YOLO-ReT-EB3 (prakharg24/yoloret code/checkpoints/efficientnetb3_416_coco.h5:
# COCO 2017, 416x416), set up as the official code evaluates it. Test only, with the
# converted weights (docs/weights.md):
#   rfcr-convert official-yoloret efficientnetb3_416_coco.h5 checkpoints/yoloret_eb3_416_coco.pth \
#       --config configs/official/yoloret_efficientnet-b3_rfcr_official-416_coco.py
#   rfcr-test configs/official/yoloret_efficientnet-b3_rfcr_official-416_coco.py \
#       checkpoints/yoloret_eb3_416_coco.pth
#
# Graph: the official yolov3_body for 'efficientnetb3', as configs/yoloret/ (truncated
# EfficientNet-B3 tapped at strides 4-32, RFCR with the stride-4 shortcut; the official
# anchors are mmdet's YOLOv3 ones). Classes: code/model_data/coco_classes.txt is COCO's 80
# categories in mmdet's CocoDataset order (six carry VOC-style names there: motorbike,
# aeroplane, sofa, pottedplant, diningtable, tvmonitor), so the labels map one to one.
# Numerics: Keras' in every BN (eps 1e-3) and TensorFlow "SAME" padding in every conv.
# Input and post-processing: as configs/official/yoloret_mobilenetv2-0.75_rfcr_official-320_
# voc0712.py (RGB in [0, 1], letterboxed and centred, zero padding; mmdet's YOLOv3
# selection with the official thresholds, docs/weights.md lists the differences), with at
# most 20 boxes per class x 80 classes per image.
# Evaluation: the official code scores COCO with its map.py too (all-point AP at IoU 0.5 per
# class, VOCMetric(eval_mode='area') here); CocoMetric adds COCO's own AP@[.5:.95].
_base_ = [
    '../_base_/models/yoloret_efficientnet-b3_coco.py',
    '../_base_/datasets/coco_yolo-416.py',
    'mmdet::_base_/default_runtime.py',
]

keras_bn = dict(type='BN', eps=1e-3)
model = dict(
    # RGB in [0, 1]: the letterboxed BGR image divided by 255, channels flipped.
    data_preprocessor=dict(mean=[0, 0, 0], std=[255, 255, 255], bgr_to_rgb=True),
    backbone=dict(init_cfg=None),  # weights: the converted checkpoint
    neck=[
        dict(type='RFCR', in_channels=(48, 136, 232), shortcut_channels=32, collect_channels=48,
             fuse_channels=96, norm_cfg=dict(type='BN', eps=1e-3, momentum=0.01)),
        dict(type='YOLOReTNeck', in_channels=(144, 232, 328), out_channels=255,
             norm_cfg=keras_bn),
    ],
    test_cfg=dict(
        nms_pre=100000,
        # Boxes clipped to the image before NMS, as the official yolo_eval; boxes that clipping
        # leaves without area stay, as there (min_bbox_size=0 would drop them).
        clip_to_image=True,
        min_bbox_size=-1,
        conf_thr=0.2,
        score_thr=0.2,
        nms=dict(type='nms', iou_threshold=0.5),
        max_per_img=1600))

input_size = 416
test_pipeline = [
    dict(type='LoadImageFromFile', backend_args=None),
    dict(type='Letterbox', scale=input_size),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='PackDetInputs',
         meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor', 'pad_param')),
]
train_dataloader = None  # the authors trained it; fine-tune with a config of configs/yoloret/
val_dataloader = dict(dataset=dict(pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = [
    dict(type='CocoMetric', ann_file='data/coco/annotations/instances_val2017.json',
         metric='bbox', format_only=False, backend_args=None),
    dict(type='VOCMetric', metric='mAP', eval_mode='area'),
]
test_evaluator = val_evaluator
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
