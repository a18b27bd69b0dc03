# The authors' YOLO-ReT-EB3 at 224x224 (prakharg24/yoloret
# code/checkpoints/efficientnetb3_224_coco.h5), set up as the official code evaluates it; all
# else as the 416 config. Test only, with the converted weights (docs/weights.md):
#   rfcr-convert official-yoloret efficientnetb3_224_coco.h5 checkpoints/yoloret_eb3_224_coco.pth \
#       --config configs/official/yoloret_efficientnet-b3_rfcr_official-224_coco.py
#   rfcr-test configs/official/yoloret_efficientnet-b3_rfcr_official-224_coco.py \
#       checkpoints/yoloret_eb3_224_coco.pth
_base_ = './yoloret_efficientnet-b3_rfcr_official-416_coco.py'

input_size = 224
test_pipeline = [
    dict(type='LoadImageFromFile', backend_args=None),
    dict(type='Letterbox', scale=input_size),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='PackDetInputs',
         meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor', 'pad_param')),
]
val_dataloader = dict(dataset=dict(pipeline=test_pipeline))
test_dataloader = val_dataloader
