# YOLO-ReT-EB3 on COCO 2017 at 416x416, the official two-phase schedule.
_base_ = [
    '../_base_/models/yoloret_efficientnet-b3_coco.py', '../_base_/datasets/coco_yolo-416.py',
    '../_base_/schedules/yoloret_2phase_250e.py', 'mmdet::_base_/default_runtime.py'
]
# Phase 1 freezes the whole truncated backbone: its 6 modules (mmdet's EfficientNet counts
# frozen_stages in modules of `layers`, the stem included).
custom_hooks = [dict(type='FreezeBackboneHook', unfreeze_epoch={{_base_.unfreeze_epoch}},
                     frozen_stages=6)]
