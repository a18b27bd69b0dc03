_base_ = ['./coco_yolo-320.py']

train_dataloader = dict(dataset=dict(pipeline={{_base_.train_pipeline_224}}))
val_dataloader = dict(dataset=dict(pipeline={{_base_.test_pipeline_224}}))
test_dataloader = val_dataloader
