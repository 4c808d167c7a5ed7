"""benchmarks/gpu.sh stops at once, with one line, where no CUDA device exists."""

import os
import subprocess
import sys

import pytest


def test_gpu_benchmark_script_fails_fast_without_cuda():
    import torch

    if torch.cuda.is_available():
        pytest.skip("a CUDA device is present: the script would run")
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    proc = subprocess.run(
        ["bash", os.path.join(root, "benchmarks", "gpu.sh")],
        env={**os.environ, "PYTHON": sys.executable},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 1
    assert proc.stderr.startswith("error: no CUDA device") and proc.stderr.count("\n") == 1
