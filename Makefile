# rfcr: one command to set up, one to test, one to run the demo. See README.md.
VENV ?= .venv
PY := $(VENV)/bin/python
DEMO_CONFIG := configs/yoloret/yoloret_mobilenetv2-0.75_rfcr_1xb4-320-3e_synthetic.py
DEMO_DATA := data/synthetic
DEMO_WORK := work_dirs/demo

.PHONY: setup test demo bench int8

## setup: create .venv with torch, mmcv (compiled ops, wheel cached in ~/.cache/rfcr), mmdet, rfcr
setup:
	bash .ci/setup_env.sh

## test: the whole test suite (CPU)
test:
	$(PY) -m pytest -q

## demo: generate the synthetic dataset if absent, train YOLO-ReT-M0.75 at 320 on CPU, evaluate
demo:
	@test -f $(DEMO_DATA)/annotations/instances_val.json || \
		$(VENV)/bin/rfcr-make-data --out $(DEMO_DATA)
	$(VENV)/bin/rfcr-train $(DEMO_CONFIG) --work-dir $(DEMO_WORK)

## bench: rfcr-bench on the suite benchmarks/suite.py (no data, no GPU) on eager PyTorch and every
## runtime installed (ONNX Runtime, OpenVINO, torch.compile, ncnn, MNN, LiteRT): rounds until
## every interval is within +-2 % or 10 min of timed rounds are spent, profiles of every target not
## met, benchmark_app's cross-check of the OpenVINO rows -> docs/bench/ (50 min on 2 cores)
bench:
	$(VENV)/bin/rfcr-bench --suite benchmarks/suite.py --runtime installed --profile \
		--precision 0.02 --max-time 600 --crosscheck --out-dir docs/bench

## int8: FP32 vs INT8 of the demo checkpoint (after make demo): mAP on its validation set and
## latency, on every runtime that quantizes (ONNX Runtime, OpenVINO, MNN, LiteRT) -> docs/bench/int8/
int8:
	$(PY) benchmarks/int8.py --config $(DEMO_CONFIG) --checkpoint $(DEMO_WORK)/epoch_3.pth \
		--out-dir docs/bench/int8
