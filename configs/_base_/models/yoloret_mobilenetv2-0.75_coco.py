# YOLO-ReT (Ganesh et al., WACV 2022), as the official code builds it (prakharg24/yoloret,
# code/yolo3/model.py `yolov3_body`):
#   MobileNetV2 x0.75 truncated (no 320 / 1280 blocks), tapped at strides 4, 8, 16, 32 ->
#   RFCR with the stride-4 shortcut (max-pooled 4x4 before its 1x1 collect conv) -> FPN
#   top-down + PAN bottom-up path of MBConv nodes -> 1x1 prediction convs, 3 anchors per scale.
# Its parameters (BN running statistics excluded, the prediction convs' biases aside) are the
# official Keras model's: 2,659,515 here, 1,857,075 with VOC's 20 classes.
# Anchors (the official model_data/yolo_anchors.txt too), assignment, losses and NMS are
# mmdet's YOLOv3 ones (see YOLOReTHead).
custom_imports = dict(imports=['rfcr'], allow_failed_imports=False)

num_classes = 80
pred_channels = 3 * (num_classes + 5)  # the MBConv nodes project to the prediction size

model = dict(
    type='YOLOV3',
    data_preprocessor=dict(
        type='DetDataPreprocessor',
        mean=[123.675, 116.28, 103.53],
        std=[58.395, 57.12, 57.375],
        bgr_to_rgb=True,
        pad_size_divisor=32),
    backbone=dict(
        type='TruncatedMobileNetV2',
        widen_factor=0.75,
        out_strides=(4, 8, 16, 32),
        # ImageNet MobileNetV2 weights at widths 0.75 and 1.4 are Keras' only. Keras' numerics
        # make the transferred features the ones Keras computed: TensorFlow "SAME" padding of
        # the stride-2 convs and BN eps 1e-3 (the official backbone's BN momentum, 0.9 in
        # Keras, is PyTorch's default 0.1). Make the checkpoint with (docs/weights.md):
        #   rfcr-convert keras-mobilenetv2 \
        #       mobilenet_v2_weights_tf_dim_ordering_tf_kernels_0.75_224_no_top.h5 \
        #       checkpoints/mobilenet_v2_x0.75_imagenet.pth
        pad_type='same',
        norm_cfg=dict(type='BN', eps=1e-3),
        init_cfg=dict(type='Pretrained', checkpoint='checkpoints/mobilenet_v2_x0.75_imagenet.pth')),
    neck=[
        dict(type='RFCR', in_channels=(24, 72, 120), shortcut_channels=24, collect_channels=48,
             fuse_channels=96),
        dict(type='YOLOReTNeck', in_channels=(120, 168, 216), out_channels=pred_channels,
             widths=(128, 256, 512)),
    ],
    bbox_head=dict(
        type='YOLOReTHead',
        num_classes=num_classes,
        in_channels=[pred_channels] * 3,
        anchor_generator=dict(
            type='YOLOAnchorGenerator',
            base_sizes=[[(116, 90), (156, 198), (373, 326)],
                        [(30, 61), (62, 45), (59, 119)],
                        [(10, 13), (16, 30), (33, 23)]],
            strides=[32, 16, 8]),
        bbox_coder=dict(type='YOLOBBoxCoder'),
        featmap_strides=[32, 16, 8],
        # Box loss: mmdet's YOLOv3 xy (BCE) + wh (MSE) losses, matched to its grid assigner
        # and prior-probability bias init. The official code's GIoU loss is available:
        # loss_bbox=dict(type='GIoULoss', reduction='sum', loss_weight=...).
        loss_cls=dict(type='CrossEntropyLoss', use_sigmoid=True, loss_weight=1.0,
                      reduction='sum'),
        loss_conf=dict(type='CrossEntropyLoss', use_sigmoid=True, loss_weight=1.0,
                       reduction='sum'),
        loss_xy=dict(type='CrossEntropyLoss', use_sigmoid=True, loss_weight=2.0,
                     reduction='sum'),
        loss_wh=dict(type='MSELoss', loss_weight=2.0, reduction='sum')),
    train_cfg=dict(
        assigner=dict(type='GridAssigner', pos_iou_thr=0.5, neg_iou_thr=0.5, min_pos_iou=0)),
    test_cfg=dict(
        nms_pre=1000,
        min_bbox_size=0,
        score_thr=0.05,
        conf_thr=0.005,
        nms=dict(type='nms', iou_threshold=0.45),
        max_per_img=100))
