"""benchmarks/bench_caption_use.py end to end on `tiny` (its numbers are measured by running it)."""

import math

from benchmarks import bench_caption_use


def test_caption_use_runs_and_pairs_the_three_captions(capsys):
    import torch

    threads = str(torch.get_num_threads())  # the benchmark sets torch's threads: keep this process's
    res = bench_caption_use.main(["--model", "tiny", "--images", "4", "--zoom", "4", "--threads", threads])
    assert list(res) == ["t<1000", "t<300", "t<100"]
    for row in res.values():
        assert set(row) == {"true", "empty", "other"} and all(math.isfinite(v) and v > 0 for v in row.values())
    assert "| t < 100 |" in capsys.readouterr().out
