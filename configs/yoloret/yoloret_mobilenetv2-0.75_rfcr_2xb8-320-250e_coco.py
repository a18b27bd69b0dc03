# YOLO-ReT-M0.75 on COCO 2017 at 320x320, the official two-phase schedule.
_base_ = [
    '../_base_/models/yoloret_mobilenetv2-0.75_coco.py', '../_base_/datasets/coco_yolo-320.py',
    '../_base_/schedules/yoloret_2phase_250e.py', 'mmdet::_base_/default_runtime.py'
]
