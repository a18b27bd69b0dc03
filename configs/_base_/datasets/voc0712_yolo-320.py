# Pascal VOC 07+12 trainval -> VOC07 test at 320x320 with mmdet's YOLOv3 augmentation.
_base_ = ['mmdet::_base_/datasets/voc0712.py', './yolo_data.py']

train_dataloader = dict(
    batch_size=8, num_workers=4,
    dataset=dict(times=1, dataset=dict(datasets={{_base_.voc0712_trainval_320}})))
val_dataloader = dict(
    batch_size=8, num_workers=4, dataset=dict(pipeline={{_base_.test_pipeline_320}}))
test_dataloader = val_dataloader
