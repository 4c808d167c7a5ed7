#!/usr/bin/env bash
# The GPU benchmarks in one short run (benchmarks/bench_gpu.py): attention backends, extraction,
# training and the pinned-memory loader on sd21-random in float16; writes benchmarks/gpu-results.md.
# Stops at once with one line when no CUDA device exists. `benchmarks/gpu.sh --device cpu --dry`
# checks the script on a CPU (toy sizes, no measurement).
set -euo pipefail
cd "$(dirname "$0")/.."
exec "${PYTHON:-python}" -m benchmarks.bench_gpu "$@"
