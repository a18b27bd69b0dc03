# Table 4, row "truncation + RFCR": YOLO-ReT-M0.75 itself.
_base_ = '../yoloret/yoloret_mobilenetv2-0.75_rfcr_2xb8-320-250e_voc0712.py'
