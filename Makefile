# rfcr: one command to set up, one to test. See README.md.
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: setup test

## setup: create .venv with torch, mmcv (compiled ops, wheel cached in ~/.cache/rfcr), mmdet, rfcr
setup:
	bash .ci/setup_env.sh

## test: the whole test suite (CPU)
test:
	$(PY) -m pytest -q
