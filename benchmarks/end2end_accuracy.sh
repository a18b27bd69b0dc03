#!/usr/bin/env bash
# End-to-end accuracy of the demo checkpoint (after make demo), per runtime: rfcr-export
# --end2end to ONNX (ONNX Runtime, OpenVINO), MNN and LiteRT, then rfcr-predict --coco-json on
# the 200 validation images, scored by pycocotools. Usage: bash benchmarks/end2end_accuracy.sh
set -euo pipefail
cd "$(dirname "$0")/.."
CFG=configs/yoloret/yoloret_mobilenetv2-0.75_rfcr_1xb4-320-3e_synthetic.py
CKPT=work_dirs/demo/epoch_3.pth
ANN=data/synthetic/annotations/instances_val.json
W=work_dirs/e2e; mkdir -p $W
for f in onnx mnn tflite; do
  fmt=$f; [ $f = tflite ] && fmt=litert
  .venv/bin/rfcr-export $CFG $W/det.$f --checkpoint $CKPT --end2end --deploy --verify --format $fmt > $W/export_$f.log 2>&1 || { echo "export $f failed"; tail -3 $W/export_$f.log; }
done
for rt in onnxruntime openvino mnn litert; do
  f=onnx; [ $rt = mnn ] && f=mnn; [ $rt = litert ] && f=tflite
  rm -rf $W/pred_$rt
  .venv/bin/rfcr-predict $W/det.$f data/synthetic/val --runtime $rt --out-dir $W/pred_$rt --coco-json $W/bbox_$rt.json --coco-ann $ANN > $W/pred_$rt.log 2>&1 || { echo "predict $rt failed"; tail -3 $W/pred_$rt.log; continue; }
  .venv/bin/python - "$ANN" "$W/bbox_$rt.json" "$rt" <<'PY'
import sys, contextlib, io
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval
with contextlib.redirect_stdout(io.StringIO()):
    gt = COCO(sys.argv[1]); dt = gt.loadRes(sys.argv[2])
    e = COCOeval(gt, dt, 'bbox'); e.evaluate(); e.accumulate(); e.summarize()
print(f'{sys.argv[3]}: mAP {e.stats[0]:.3f} mAP@0.5 {e.stats[1]:.3f}')
PY
done
