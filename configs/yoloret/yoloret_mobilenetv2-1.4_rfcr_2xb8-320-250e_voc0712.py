# YOLO-ReT-M1.4 on Pascal VOC 07+12 at 320x320, the official two-phase schedule.
_base_ = [
    '../_base_/models/yoloret_mobilenetv2-1.4_voc.py', '../_base_/datasets/voc0712_yolo-320.py',
    '../_base_/schedules/yoloret_2phase_250e.py', 'mmdet::_base_/default_runtime.py'
]
