#!/usr/bin/env bash
# Create .venv with torch, mmengine, mmcv (compiled ops), mmdet and rfcr (editable, dev extras).
#
# Idempotent. mmcv 2.1.0 has no wheel for this torch and takes 10-25 minutes to compile
# on 2 cores, so the wheel is built once and cached under $RFCR_CACHE_DIR (default
# ~/.cache/rfcr), keyed by the mmcv, torch, Python and CPU/CUDA flavour.
set -euo pipefail

cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3.11}
VENV=${VENV:-.venv}
TORCH_VERSION=2.14.1
TORCHVISION_VERSION=0.29.1
MMENGINE_VERSION=0.10.7
MMCV_VERSION=2.1.0
MMDET_VERSION=3.3.0
CACHE_DIR=${RFCR_CACHE_DIR:-$HOME/.cache/rfcr}

say() { printf '\033[1m[setup %s]\033[0m %s\n' "$(date +%H:%M:%S)" "$*"; }
# This machine's local indexes print one harmless warning per package: hide those.
pip_() {
    "$PY" -m pip --disable-pip-version-check "$@" \
        2> >(grep -v 'is ignored: it is neither a file nor a directory' >&2)
}

if [ ! -x "$VENV/bin/python" ]; then
    say "creating $VENV with $($PYTHON --version)"
    "$PYTHON" -m venv "$VENV"
fi
VENV_ABS=$(cd "$VENV" && pwd)
PY="$VENV_ABS/bin/python"

say "installing build tools, torch $TORCH_VERSION, torchvision $TORCHVISION_VERSION, mmengine $MMENGINE_VERSION"
# setuptools<82: mmcv's setup.py and mmdet's `mmdet::` config bases import pkg_resources.
pip_ install -q --upgrade pip
pip_ install -q 'setuptools>=77.0.3,<82' wheel ninja \
    "torch==$TORCH_VERSION" "torchvision==$TORCHVISION_VERSION" "mmengine==$MMENGINE_VERSION"

if "$PY" -c "import mmcv, mmcv.ops, sys; sys.exit(mmcv.__version__ != '$MMCV_VERSION')" >/dev/null 2>&1; then
    say "mmcv $MMCV_VERSION with compiled ops already installed"
else
    flavour=$("$PY" - <<'PY'
import os, torch
cuda = torch.cuda.is_available() or os.environ.get('FORCE_CUDA') == '1'
print(f"cu{torch.version.cuda.replace('.', '')}" if cuda and torch.version.cuda else 'cpu')
PY
)
    py_tag=$("$PY" -c 'import sys; print(f"cp{sys.version_info[0]}{sys.version_info[1]}")')
    wheel_dir="$CACHE_DIR/wheels/mmcv-$MMCV_VERSION-torch$TORCH_VERSION-$py_tag-$flavour"
    if ls "$wheel_dir"/mmcv-*.whl >/dev/null 2>&1; then
        say "using the cached mmcv wheel in $wheel_dir"
    else
        say "no cached mmcv wheel in $wheel_dir"
        say "building mmcv $MMCV_VERSION ($flavour ops) from the PyPI sdist: 10-25 minutes on 2 cores, once per machine"
        build=$(mktemp -d)
        trap 'rm -rf "$build"' EXIT
        pip_ download -q --no-deps --no-binary :all: --no-build-isolation -d "$build" "mmcv==$MMCV_VERSION"
        tar -xzf "$build/mmcv-$MMCV_VERSION.tar.gz" -C "$build"
        src="$build/mmcv-$MMCV_VERSION"
        # torch >= 2.10 headers need C++20; mmcv 2.1.0 hardcodes C++17.
        sed -i 's/c++17/c++20/g' "$src/setup.py"
        grep -q 'std=c++20' "$src/setup.py" || { echo "could not patch the C++ standard in mmcv's setup.py" >&2; exit 1; }
        # The compiler output goes to a log; ninja's [done/total] count is reported every 30 s.
        (cd "$src" && PATH="$VENV_ABS/bin:$PATH" MMCV_WITH_OPS=1 MAX_JOBS=${MAX_JOBS:-$(nproc)} \
            "$PY" -m pip wheel -v --no-deps --no-build-isolation -w "$build/dist" . >"$build/build.log" 2>&1) &
        pid=$!
        while kill -0 "$pid" 2>/dev/null; do
            sleep 30
            step=$(grep -oE '^ *\[[0-9]+/[0-9]+\]' "$build/build.log" | tail -n 1 | tr -d ' ' || true)
            say "  mmcv build running ${step:-(configuring)}"
        done
        if ! wait "$pid" || ! ls "$build"/dist/mmcv-*.whl >/dev/null 2>&1; then
            tail -n 40 "$build/build.log" >&2
            echo "mmcv build failed (last 40 log lines above)" >&2
            exit 1
        fi
        mkdir -p "$wheel_dir"
        cp "$build"/dist/mmcv-*.whl "$wheel_dir/"
        say "cached $(basename "$build"/dist/mmcv-*.whl) in $wheel_dir"
    fi
    pip_ install -q "$wheel_dir"/mmcv-*.whl
fi

say "installing mmdet $MMDET_VERSION and rfcr (editable, dev extras)"
pip_ install -q "mmdet==$MMDET_VERSION" -e '.[dev]'

"$PY" - <<'PY'
import mmcv, mmdet, mmengine, torch
from mmcv.ops import nms  # noqa: F401  (fails without compiled ops)
import rfcr
print(f'[setup] ok: torch {torch.__version__}, mmengine {mmengine.__version__}, '
      f'mmcv {mmcv.__version__} (compiled ops), mmdet {mmdet.__version__}, rfcr {rfcr.__version__}')
PY
