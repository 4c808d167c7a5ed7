"""benchmarks/bench_demo_jobs.py without running the demo twice (its numbers come from running it)."""

import json
import subprocess

import pytest

from benchmarks import bench_demo_jobs

RESULTS = {  # the fields of the demo's results.json the benchmark reads (diffseg.stages.demo.report)
    "timings": {"extract (mini)": 10.0, "total (wall; 2 jobs at once)": 42.0},
    "models": {"mini": {"miou": {"val": 0.21, "val-night": 0.09}}, "tiny": {"miou": {"val": 0.13, "val-night": None}}},
    "cells": {"baseline": {"targets": {"val": {"seeds": [0.1, 0.12], "mean": 0.11, "std": 0.01}}}},
}


def test_numbers_are_every_finite_miou_in_points():
    numbers = bench_demo_jobs._numbers(RESULTS)
    assert numbers == pytest.approx(
        {
            "main run mini val": 21.0,
            "main run mini val-night": 9.0,
            "main run tiny val": 13.0,  # (tiny's val-night is missing: left out)
            "table4 baseline val seed 0": 10.0,
            "table4 baseline val seed 1": 12.0,
        }
    )


def test_an_arm_reads_the_demo_s_total_and_a_failed_demo_stops_the_benchmark(tmp_path, monkeypatch):
    def fake_demo(cmd, **kwargs):
        out = tmp_path / "arm"
        out.mkdir(exist_ok=True)
        (out / "results.json").write_text(json.dumps(RESULTS))
        return subprocess.CompletedProcess(cmd, 0, "", "")

    monkeypatch.setattr(bench_demo_jobs.subprocess, "run", fake_demo)
    arm = bench_demo_jobs.run_arm("small", 2, tmp_path / "arm")
    assert arm["jobs"] == 2 and arm["demo_total"] == 42.0 and len(arm["numbers"]) == 5

    monkeypatch.setattr(
        bench_demo_jobs.subprocess, "run", lambda cmd, **kw: subprocess.CompletedProcess(cmd, 1, "", "boom")
    )
    with pytest.raises(SystemExit, match="(?s)failed \\(1\\).*boom"):
        bench_demo_jobs.run_arm("small", 1, tmp_path / "arm")
