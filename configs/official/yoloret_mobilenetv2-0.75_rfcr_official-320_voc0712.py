# The authors' YOLO-ReT-M0.75 (prakharg24/yoloret code/checkpoints/mobilenetv2x75_320_voc.h5:
# trained on VOC 07+12 trainval at 320x320; the paper reports 68.75 AP50 on VOC07 test), set
# up as the official code evaluates it. Test only, with the converted weights
# (docs/weights.md):
#   rfcr-convert official-yoloret mobilenetv2x75_320_voc.h5 checkpoints/yoloret_m075_320_voc.pth \
#       --config configs/official/yoloret_mobilenetv2-0.75_rfcr_official-320_voc0712.py
#   rfcr-test configs/official/yoloret_mobilenetv2-0.75_rfcr_official-320_voc0712.py \
#       checkpoints/yoloret_m075_320_voc.pth
#
# Graph: the official yolov3_body, as configs/yoloret/ (stride-4 shortcut into RFCR; the
# official anchors, code/model_data/yolo_anchors.txt, are mmdet's YOLOv3 ones; the classes
# are VOC's in mmdet's VOCDataset order, which is code/model_data/voc_classes.txt's).
# Numerics: Keras' in all 72 BN layers (eps 1e-3; momentum only matters for fine-tuning:
# RFCR's two BNs use Keras' default 0.99, PyTorch 0.01, the others the official training's
# 0.9, PyTorch's default 0.1) and TensorFlow "SAME" padding of the backbone's stride-2 convs.
# Input (code/yolo.py): RGB in [0, 1], letterboxed to 320x320 with the image centred and zero
# (black) padding (rfcr's Letterbox: the official truncated size, bilinear on the float image).
# Post-processing: mmdet's YOLOv3 decoding equals the official yolo_head, and boxes are
# clipped to the original image before NMS as in the official yolo_eval (clip_to_image).
# Selection differs from yolo_eval (keep objectness x class probability > 0.2, per-class NMS
# at IoU 0.5 with at most 20 boxes per class, boxes cut to whole pixels):
#   - mmdet keeps objectness >= conf_thr and class probability > score_thr (0.2 each) and
#     scores their product: a superset of the official boxes (products down to 0.04 stay),
#     which can only raise all-point AP;
#   - per-class NMS at IoU 0.5 as the official, but at most max_per_img=400 boxes per image
#     (20 classes x 20) instead of 20 per class; no top-k before NMS (nms_pre keeps all);
#   - boxes stay float (clipped, but not cut to whole pixels).
# Evaluation: VOCMetric with all-point ('area') AP, as the official map.py. mmdet ignores
# `difficult` objects; the official evaluation leaves them out of the ground truth, so a
# detection of one is a false positive there.
_base_ = [
    '../_base_/models/yoloret_mobilenetv2-0.75_voc.py',
    '../_base_/datasets/voc0712_yolo-320.py',
    'mmdet::_base_/default_runtime.py',
]

keras_bn = dict(type='BN', eps=1e-3)
model = dict(
    # RGB in [0, 1]: the letterboxed BGR image divided by 255, channels flipped.
    data_preprocessor=dict(mean=[0, 0, 0], std=[255, 255, 255], bgr_to_rgb=True),
    backbone=dict(init_cfg=None),  # weights: the converted checkpoint
    neck=[
        dict(type='RFCR', in_channels=(24, 72, 120), shortcut_channels=24, collect_channels=48,
             fuse_channels=96, norm_cfg=dict(type='BN', eps=1e-3, momentum=0.01)),
        dict(type='YOLOReTNeck', in_channels=(120, 168, 216), out_channels=75,
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
        max_per_img=400))

test_pipeline = [
    dict(type='LoadImageFromFile', backend_args=None),
    dict(type='Letterbox', scale=320),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='PackDetInputs',
         meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor', 'pad_param')),
]
train_dataloader = None  # the authors trained it; fine-tune with a config of configs/yoloret/
val_dataloader = dict(dataset=dict(pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(type='VOCMetric', metric='mAP', eval_mode='area')
test_evaluator = val_evaluator
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
