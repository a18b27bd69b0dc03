#!/usr/bin/env bash
# GPU latency of the detectors group (benchmarks/gpu.py) -> docs/bench/gpu/, or into $OUT
# where that is set (the device tool brings back what is written under $OUT).
#
#   bash benchmarks/gpu.sh wheels [pip args]  # where PyPI is reachable, once: the packages
#                                             # a bare GPU machine lacks -> work_dirs/gpu-wheels
#   bash benchmarks/gpu.sh [gpu.py args]      # on the GPU machine: install those offline, run
#                                             # gpu.py under a hard limit (GPU_TIMEOUT, 480 s)
#
# The lent GPU machine reaches no package registry. Its python3 holds torch (2.11.0, CUDA 13,
# Python 3.12), torchvision, onnx and onnxruntime, but not mmengine, mmcv, mmdet or TensorRT.
# `wheels` downloads mmengine, mmdet and their small dependencies for that Python (7 MB), and
# mmcv 2.1.0 with its CPU ops built against that torch: mmdet imports mmcv.ops when its
# models load (the benchmark itself runs none: raw head outputs, no NMS). That wheel (32 MB)
# is cached under ~/.cache/rfcr/wheels, keyed like .ci/setup_env.sh's; building it needs a
# Python $DEVICE_PY venv with torch $DEVICE_TORCH (3.5 GB) and 10-60 minutes on 2 shared
# cores. `GPU_MMCV=sdist bash benchmarks/gpu.sh wheels` takes mmcv's source instead (0.5 MB),
# which the GPU machine then builds itself (about 2 minutes on its 16 cores; it needs a C++
# compiler and Python headers there). Carry work_dirs/gpu-wheels to the GPU machine.
# TensorRT's libraries are not on PyPI (tensorrt-cu13-libs is a stub that downloads them
# from NVIDIA's own index), so the TensorRT rows say "not measured" unless the machine has a
# tensorrt of its own.
set -euo pipefail
cd "$(dirname "$0")/.."

WHEELS=${GPU_WHEELS:-work_dirs/gpu-wheels}
DEVICE_TORCH=${DEVICE_TORCH:-2.11.0}
DEVICE_PY=${DEVICE_PY:-3.12}
MMCV_VERSION=2.1.0
CACHE_DIR=${RFCR_CACHE_DIR:-$HOME/.cache/rfcr}
PACKAGES=(mmengine==0.10.7 mmdet==3.3.0 'setuptools<82' addict yapf platformdirs termcolor
          terminaltables pycocotools shapely)

say() { printf '\033[1m[gpu %s]\033[0m %s\n' "$(date +%H:%M:%S)" "$*"; }
die() { echo "benchmarks/gpu.sh: $*" >&2; exit 1; }

# build_mmcv PYTHON SDIST DEST: mmcv's wheel with CPU ops (even beside a GPU, hidden from the
# build: the benchmark calls no op) for PYTHON's torch, into DEST.
build_mmcv() {
    local py sdist=$2 dest=$3 build
    py="$(cd "$(dirname "$(command -v "$1")")" && pwd)/$(basename "$1")"  # absolute, venv kept
    build=$(mktemp -d)
    tar -xzf "$sdist" -C "$build"
    # torch >= 2.10 headers need C++20; mmcv 2.1.0 hardcodes C++17 (as .ci/setup_env.sh).
    sed -i 's/c++17/c++20/g' "$build/mmcv-$MMCV_VERSION/setup.py"
    (cd "$build/mmcv-$MMCV_VERSION" && PATH="$(dirname "$py"):$PATH" MMCV_WITH_OPS=1 \
        FORCE_CUDA=0 CUDA_VISIBLE_DEVICES= MAX_JOBS=${MAX_JOBS:-$(nproc)} \
        "$py" -m pip wheel -q --no-deps --no-build-isolation -w "$build/dist" .) \
        || die "mmcv build failed in $build"
    mkdir -p "$dest"
    cp "$build"/dist/mmcv-*.whl "$dest/"
    rm -rf "$build"
}

wheels() {
    local pip=(python3 -m pip --disable-pip-version-check)
    [ -x .venv/bin/python ] && pip=(.venv/bin/python -m pip --disable-pip-version-check)
    local py_tag="cp${DEVICE_PY/./}"
    mkdir -p "$WHEELS"
    say "downloading ${PACKAGES[*]} for CPython $DEVICE_PY into $WHEELS"
    "${pip[@]}" download -q --no-deps --only-binary=:all: --python-version "$DEVICE_PY" \
        --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
        --platform manylinux2014_x86_64 -d "$WHEELS" "${PACKAGES[@]}" "$@"
    if [ "${GPU_MMCV:-wheel}" = sdist ]; then
        "${pip[@]}" download -q --no-deps --no-binary :all: --no-build-isolation \
            -d "$WHEELS" "mmcv==$MMCV_VERSION"
    else
        local wheel_dir="$CACHE_DIR/wheels/mmcv-$MMCV_VERSION-torch$DEVICE_TORCH-$py_tag-cpu"
        if ! ls "$wheel_dir"/mmcv-*.whl >/dev/null 2>&1; then
            local venv=${GPU_BUILD_VENV:-$CACHE_DIR/gpu-build-venv} src
            say "building mmcv $MMCV_VERSION (CPU ops) for torch $DEVICE_TORCH in $venv"
            [ -x "$venv/bin/python" ] || "${GPU_BUILD_PYTHON:-python$DEVICE_PY}" -m venv "$venv"
            "$venv/bin/python" -m pip install -q "torch==$DEVICE_TORCH" 'setuptools<82' wheel \
                ninja numpy
            src=$(mktemp -d)
            "${pip[@]}" download -q --no-deps --no-binary :all: --no-build-isolation \
                -d "$src" "mmcv==$MMCV_VERSION"
            build_mmcv "$venv/bin/python" "$src/mmcv-$MMCV_VERSION.tar.gz" "$wheel_dir"
            rm -rf "$src"
        fi
        cp "$wheel_dir"/mmcv-*.whl "$WHEELS/"
    fi
    say "$(du -sh "$WHEELS" | cut -f1) in $WHEELS: carry it to the GPU machine"
}

run() {
    local py=${PYTHON:-python3}
    [ -z "${PYTHON:-}" ] && [ -x .venv/bin/python ] && py=.venv/bin/python
    local start=$SECONDS check='import mmdet.models, mmcv.ops'
    if ! "$py" -c "$check" 2>/dev/null; then
        local site=${GPU_SITE:-$HOME/.cache/rfcr/gpu-site}
        if ! PYTHONPATH="$site" "$py" -c "$check" 2>/dev/null; then
            local built=()
            if ! ls "$WHEELS"/mmcv-*.whl >/dev/null 2>&1; then
                ls "$WHEELS"/mmcv-*.tar.gz >/dev/null 2>&1 || die "mmdet is not importable \
and $WHEELS holds no mmcv: run 'bash benchmarks/gpu.sh wheels' where PyPI is reachable and \
carry $WHEELS"
                say "building mmcv $MMCV_VERSION (CPU ops) from $WHEELS on $(nproc) cores"
                build_mmcv "$py" "$(ls "$WHEELS"/mmcv-*.tar.gz)" "$site.mmcv"
                built=("$site.mmcv"/mmcv-*.whl)
            fi
            say "installing the wheels in $WHEELS into $site (offline)"
            "$py" -m pip install -q --disable-pip-version-check --no-index --no-deps \
                --no-compile --upgrade --target "$site" "$WHEELS"/*.whl "${built[@]}"
        fi
        export PYTHONPATH="$site${PYTHONPATH:+:$PYTHONPATH}"
        "$py" -c "$check" || die "mmcv's ops do not load with this machine's torch \
($("$py" -c 'import torch; print(torch.__version__)')): make the wheels with DEVICE_TORCH set to it"
    fi
    export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1  # rfcr: this checkout
    say "environment ready in $((SECONDS - start)) s ($py)"
    local out=${OUT:-docs/bench/gpu}
    mkdir -p "$out"
    nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm --format=csv || true
    set +e
    timeout "${GPU_TIMEOUT:-480}" "$py" benchmarks/gpu.py --out-dir "$out" "$@" 2>&1 \
        | tee "$out/gpu.log"
    local rc=${PIPESTATUS[0]}
    set -e
    [ "$rc" = 124 ] && say "gpu.py stopped at ${GPU_TIMEOUT:-480} s: $out/gpu.md is the" \
        "table it wrote before timing, if it got that far"
    say "done in $((SECONDS - start)) s (rc=$rc): $out/gpu.md"
    return "$rc"
}

if [ "${1:-}" = wheels ]; then
    shift
    wheels "$@"
else
    run "$@"
fi
