# COCO 2017 at 320x320 with mmdet's YOLOv3 augmentation; batch 8 per GPU (official code).
_base_ = ['mmdet::_base_/datasets/coco_detection.py', './yolo_data.py']

train_dataloader = dict(
    batch_size=8, num_workers=4, dataset=dict(pipeline={{_base_.train_pipeline_320}}))
val_dataloader = dict(
    batch_size=8, num_workers=4, dataset=dict(pipeline={{_base_.test_pipeline_320}}))
test_dataloader = val_dataloader
