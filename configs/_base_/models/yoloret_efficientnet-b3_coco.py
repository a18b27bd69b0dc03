# YOLO-ReT-EB3 (Ganesh et al., WACV 2022), the paper's COCO model, as the official code builds
# it (prakharg24/yoloret, code/yolo3/model.py `yolov3_body` with 'efficientnetb3'):
#   EfficientNet-B3 truncated (no 384-channel last stage, no 1536-channel 1x1 conv), tapped
#   at strides 4, 8, 16, 32 (Keras' add_2, add_4, add_12, add_17: 32/48/136/232 channels) ->
#   RFCR with the stride-4 shortcut -> the FPN/PAN path of MBConv nodes -> 1x1 prediction
#   convs; neck and head as YOLO-ReT-M0.75's, on the wider inputs.
# Its parameters (BN running statistics excluded, the prediction convs' biases aside) are the
# official Keras model's: 8,788,793 (6,819,118 in the backbone).
_base_ = './yoloret_mobilenetv2-0.75_coco.py'

model = dict(
    backbone=dict(
        _delete_=True,
        type='TruncatedEfficientNet',
        arch='b3',
        out_strides=(4, 8, 16, 32),
        # Keras' numerics, mmdet's EfficientNet defaults: TensorFlow "SAME" padding
        # (Conv2dAdaptivePadding) and BN eps 1e-3. The official backbone's BN momentum (0.99
        # in Keras) is PyTorch's 0.01, its drop-connect rate 0.2.
        norm_cfg=dict(type='BN', eps=1e-3, momentum=0.01),
        drop_path_rate=0.2,
        # mmpretrain's ImageNet EfficientNet-B3 (converted from TensorFlow's; the official
        # code starts from the Keras port of TensorFlow's weights). Fetch it once:
        #   wget https://download.openmmlab.com/mmclassification/v0/efficientnet/efficientnet-b3_3rdparty_8xb32-aa_in1k_20220119-5b4887a0.pth -P checkpoints/
        init_cfg=dict(
            type='Pretrained',
            checkpoint='checkpoints/efficientnet-b3_3rdparty_8xb32-aa_in1k_20220119-5b4887a0.pth')),
    neck=[
        dict(type='RFCR', in_channels=(48, 136, 232), shortcut_channels=32, collect_channels=48,
             fuse_channels=96),
        dict(type='YOLOReTNeck', in_channels=(144, 232, 328), out_channels={{_base_.pred_channels}},
             widths=(128, 256, 512)),
    ])
