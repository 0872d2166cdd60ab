#!/usr/bin/env bash
# GPU check of the decoder runtime (issue 7): CUDA decode vs CPU decode (symbols exact,
# pixels within a stated tolerance), bf16/fp16 quality, CUDA graphs / compile, and CUDA
# throughput for onedc-tiny and onedc-sd15-shaped random weights at 512x512 and 1080p.
# Prints one SUMMARY; takes about 3-6 minutes on one H100 (--budget caps the optional parts).
#
# The device image has torch, numpy, opencv, safetensors, pyyaml, scipy, pluggy, regex,
# huggingface-hub but not diffusers, constriction, google-crc32c (nor importlib-metadata
# 10, which diffusers wants). Carry them as wheels:
#
#   here, once (needs the network):    benchmarks/gpu_check.sh prepare      # -> .whl/ (~7 MB)
#   on the device (the `run` tool):    command: "bash benchmarks/gpu_check.sh"
#                                      carry:   [".whl"], timeout_s: 560
#
# Results: the log and gpu_check.json land in $OUT (or /tmp).
set -euo pipefail
cd "$(dirname "$0")/.."

WHEELS=(
  diffusers==0.42.1
  constriction==0.5.0
  google-crc32c==1.9.0
  importlib-metadata==10.2.0
  lazy-importer==0.1.0
  pytorch-msssim==1.0.0
)

if [ "${1:-}" = "prepare" ]; then
  grep -qxF '/.whl/' .git/info/exclude 2>/dev/null || echo '/.whl/' >> .git/info/exclude
  python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 \
    --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --platform manylinux1_x86_64 \
    -d .whl "${WHEELS[@]}"
  ls -l .whl
  exit 0
fi

if ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl
  export PYTHONPATH="/tmp/site:$PWD${PYTHONPATH:+:$PYTHONPATH}"
else
  export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
fi
if ! python3 -c "import diffusers, constriction, google_crc32c" 2>/dev/null; then
  echo "gpu_check: diffusers / constriction / google-crc32c missing: run" \
       "'benchmarks/gpu_check.sh prepare' on a machine with network and carry .whl" >&2
  exit 2
fi
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null || true
out="${OUT:-/tmp}"
export PYTHONUNBUFFERED=1
set -o pipefail
timeout 540 python3 benchmarks/gpu_check.py --device cuda --json "$out/gpu_check.json" "$@" 2>&1 \
  | tee "$out/gpu_check.log"
