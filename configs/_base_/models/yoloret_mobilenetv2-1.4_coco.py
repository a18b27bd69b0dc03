# YOLO-ReT-M1.4: MobileNetV2 x1.4 truncated (taps 32 / 48 / 136 / 224 channels). The backbone
# checkpoint, from Keras' ImageNet weights:
#   rfcr-convert keras-mobilenetv2 \
#       mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.4_224_no_top.h5 \
#       checkpoints/mobilenet_v2_x1.4_imagenet.pth
_base_ = './yoloret_mobilenetv2-0.75_coco.py'

model = dict(
    backbone=dict(
        widen_factor=1.4,
        init_cfg=dict(type='Pretrained', checkpoint='checkpoints/mobilenet_v2_x1.4_imagenet.pth')),
    neck=[
        dict(type='RFCR', in_channels=(48, 136, 224), shortcut_channels=32, collect_channels=48,
             fuse_channels=96),
        dict(type='YOLOReTNeck', in_channels=(144, 232, 320), out_channels=255),
    ])
