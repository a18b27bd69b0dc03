# The CPU demo: YOLO-ReT-M0.75 at 320 trained from scratch on rfcr's synthetic shapes
# (6 classes, 1500 training images). `make demo` generates the data, trains 3 epochs (1125
# iterations of 4 images), evaluates with CocoMetric and prints the metrics. The recipe is
# tuned for a 2-core CPU budget of 20 minutes: small batches (more updates per second),
# AdamW at 1e-2 with a cosine decay, anchors fitted to the shapes, channels_last, and
# bfloat16 autocast where the CPU computes in bfloat16 natively (AVX512-BF16 / AMX;
# float32 elsewhere, where emulated bfloat16 is many times slower).
_base_ = [
    '../_base_/models/yoloret_mobilenetv2-0.75_coco.py',
    '../_base_/datasets/synthetic_shapes-320.py',
    'mmdet::_base_/default_runtime.py',
]

num_classes = 6
pred_channels = 3 * (num_classes + 5)
model = dict(
    # From scratch: no ImageNet weights, so no Keras numerics either (PyTorch's padding and BN).
    backbone=dict(init_cfg=None, pad_type='', norm_cfg=dict(_delete_=True, type='BN')),
    neck=[
        dict(type='RFCR', in_channels=(24, 72, 120), shortcut_channels=24, collect_channels=48,
             fuse_channels=96),
        dict(type='YOLOReTNeck', in_channels=(120, 168, 216), out_channels=pred_channels),
    ],
    bbox_head=dict(
        num_classes=num_classes,
        in_channels=[pred_channels] * 3,
        # The shapes are square-ish and 12-128 px: square anchors spaced log-uniformly over
        # that range (YOLOv3's COCO anchors are elongated and up to 266 px).
        anchor_generator=dict(base_sizes=[[(70, 70), (94, 94), (126, 126)],
                                          [(29, 29), (39, 39), (52, 52)],
                                          [(12, 12), (16, 16), (22, 22)]])))

train_dataloader = dict(batch_size=4)

max_epochs = 3
train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=max_epochs, val_interval=max_epochs)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
# bfloat16 autocast + channels_last: 1.75x faster training than float32 on a 2-core
# AVX512-BF16 Xeon. On a CPU without native bfloat16 (e.g. AVX2 only) the wrapper runs
# float32 and logs it (cpu='native').
optim_wrapper = dict(
    type='AutocastOptimWrapper',
    dtype='bfloat16',
    cpu='native',
    optimizer=dict(type='AdamW', lr=1e-2, weight_decay=0.05),
    paramwise_cfg=dict(norm_decay_mult=0.0, bias_decay_mult=0.0,
                       custom_keys={'fusion_weights': dict(decay_mult=0.0)}))
param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=False, begin=0, end=50),
    dict(type='CosineAnnealingLR', by_epoch=True, begin=0, end=max_epochs, T_max=max_epochs,
         eta_min=1e-4, convert_to_iter_based=True),
]
custom_hooks = [dict(type='ChannelsLastHook')]
default_hooks = dict(
    logger=dict(type='LoggerHook', interval=20),
    checkpoint=dict(type='CheckpointHook', interval=max_epochs, max_keep_ckpts=1),
    visualization=dict(type='DetVisualizationHook', draw=False))
env_cfg = dict(dist_cfg=dict(backend='gloo'))
auto_scale_lr = dict(enable=False, base_batch_size=16)
