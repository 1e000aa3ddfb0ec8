#!/usr/bin/env bash
# NVIDIA GPU test suite + benchmark, built here and run on a GPU machine without Rust. Both
# go through the runtime (egpu::Device on nv:N, egpu-nv's runtime adapter underneath); the
# suite is crates/egpu/examples/nv_suite.rs.
#
#   bench/nv_gpu_suite.sh build   # on a build machine: release binary -> .device/nv/nv_suite
#   bench/nv_gpu_suite.sh run     # on the GPU machine (carry .device/nv): suite, then benchmark
#                                 # against the CUDA driver API (libcuda) in the same run
#   bench/nv_gpu_suite.sh         # both, when cargo and a GPU are on the same machine
#
# Needs on the GPU machine: nvidia.ko + nvidia-uvm, NVRTC (CUDA toolkit or the PyPI wheel that
# PyTorch installs; EGPU_NVRTC=/path/libnvrtc.so overrides) and, for the ratios, libcuda.so.1
# (part of every NVIDIA driver install).
set -euo pipefail
cd "$(dirname "$0")/.."
out=.device/nv
mode=${1:-all}

build() {
    CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-target} cargo build --release -p egpu --example nv_suite
    mkdir -p "$out"
    cp "${CARGO_TARGET_DIR:-target}/release/examples/nv_suite" "$out/nv_suite"
    echo "built $out/nv_suite"
}

run() {
    local bin="$out/nv_suite"
    [ -x "$bin" ] || { echo "missing $bin: run '$0 build' first and carry .device/nv"; exit 2; }
    export EGPU_CACHE_DIR=${EGPU_CACHE_DIR:-$out/cache}
    nvidia-smi --query-gpu=name,driver_version --format=csv,noheader 2>/dev/null || true
    date -u
    status=0
    "$bin" || status=$?
    "$bin" --bench || status=$?
    exit $status
}

case "$mode" in
    build) build ;;
    run) run ;;
    all) build; run ;;
    *) echo "usage: $0 [build|run]"; exit 2 ;;
esac
