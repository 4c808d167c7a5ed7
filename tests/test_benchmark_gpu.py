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


def test_each_section_is_saved_as_soon_as_measured_and_a_failure_loses_nothing(tmp_path, monkeypatch):
    from benchmarks import bench_gpu

    out = tmp_path / "gpu-results.md"
    seen_on_disk = []

    def first(sz, device):
        return "first body"

    def broken(sz, device):
        seen_on_disk.append(out.read_text())  # the first section is already saved
        raise RuntimeError("CUDA error: an illegal memory access\nwas encountered")

    def last(sz, device):
        return "last body"

    monkeypatch.setattr(bench_gpu, "SECTIONS", (("First", first), ("Broken", broken), ("Last", last)))
    failed = bench_gpu.run(bench_gpu.DRY, "cpu", out, dry=True)
    assert failed == 1
    assert "first body" in seen_on_disk[0] and "Broken" not in seen_on_disk[0]
    text = out.read_text()
    assert text.index("## First") < text.index("## Broken") < text.index("## Last")
    assert "FAILED: RuntimeError: CUDA error: an illegal memory access was encountered" in text and "last body" in text
