# mmdet's YOLOv3 (MobileNetV2) augmentation at a fixed square input size, and the VOC 07+12
# trainval sets with it. The helpers run while the config is parsed; mmengine drops functions
# from the resulting config.
def yolo_train_pipeline(size):
    return [
        dict(type='LoadImageFromFile', backend_args=None),
        dict(type='LoadAnnotations', with_bbox=True),
        dict(type='Expand', mean=[123.675, 116.28, 103.53], to_rgb=True, ratio_range=(1, 2)),
        dict(type='MinIoURandomCrop', min_ious=(0.4, 0.5, 0.6, 0.7, 0.8, 0.9),
             min_crop_size=0.3),
        dict(type='Resize', scale=size, keep_ratio=True),
        dict(type='RandomFlip', prob=0.5),
        dict(type='PhotoMetricDistortion'),
        dict(type='PackDetInputs'),
    ]


def yolo_test_pipeline(size):
    return [
        dict(type='LoadImageFromFile', backend_args=None),
        dict(type='Resize', scale=size, keep_ratio=True),
        dict(type='LoadAnnotations', with_bbox=True),
        dict(type='PackDetInputs',
             meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor')),
    ]


train_pipeline_224 = yolo_train_pipeline((224, 224))
test_pipeline_224 = yolo_test_pipeline((224, 224))
train_pipeline_320 = yolo_train_pipeline((320, 320))
test_pipeline_320 = yolo_test_pipeline((320, 320))
train_pipeline_416 = yolo_train_pipeline((416, 416))
test_pipeline_416 = yolo_test_pipeline((416, 416))


def voc0712_trainval(pipeline, data_root='data/VOCdevkit/'):
    return [
        dict(type='VOCDataset', data_root=data_root,
             ann_file=f'VOC{year}/ImageSets/Main/trainval.txt',
             data_prefix=dict(sub_data_root=f'VOC{year}/'),
             filter_cfg=dict(filter_empty_gt=True, min_size=32, bbox_min_size=32),
             pipeline=pipeline)
        for year in (2007, 2012)
    ]


voc0712_trainval_320 = voc0712_trainval(train_pipeline_320)
voc0712_trainval_416 = voc0712_trainval(train_pipeline_416)
