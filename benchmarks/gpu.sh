#!/usr/bin/env bash
# The GPU check in one short run (benchmarks/bench_gpu.py; under 8 minutes on one H100/H200 with a
# CUDA torch installed and no hub access): throughput of extraction against the bare U-Net (fp16 and
# bf16), xattn capture cost, peak GPU memory, codec encode rate, training from a pca cache and its
# data wait, a finiteness check of every captured layer, attention backends. Each section is saved to
# benchmarks/gpu-results.md as soon as it is measured. Stops at once with one line when no CUDA device
# exists. `bash benchmarks/gpu.sh --device cpu --dry` checks the script on a CPU (toy sizes, no
# measurement; writes benchmarks/gpu-results-dry.md; CI runs it).
set -euo pipefail
cd "$(dirname "$0")/.."
exec "${PYTHON:-python}" -m benchmarks.bench_gpu "$@"
