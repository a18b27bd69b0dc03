_base_ = ['./voc0712_yolo-320.py']

train_dataloader = dict(dataset=dict(dataset=dict(datasets={{_base_.voc0712_trainval_416}})))
val_dataloader = dict(dataset=dict(pipeline={{_base_.test_pipeline_416}}))
test_dataloader = val_dataloader
