# Table 4 at width 1.4, row "truncation + RFCR": YOLO-ReT-M1.4 itself.
_base_ = '../../../configs/yoloret/yoloret_mobilenetv2-1.4_rfcr_2xb8-320-250e_voc0712.py'
