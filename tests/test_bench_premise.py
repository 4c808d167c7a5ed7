"""The premise benchmark (experiments/bench_premise.py) end to end at a tiny size, so that it cannot
rot; its numbers are measured by running it, never asserted here."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from diffseg.cache import CacheReader, schema
from experiments import bench_premise


def test_space_to_depth_keeps_every_pixel():
    image = np.random.default_rng(0).integers(0, 256, (16, 24, 3), dtype=np.uint8)
    x = bench_premise.space_to_depth(image)
    assert x.shape == (1, 192, 2, 3) and x.dtype == np.float16
    back = torch.nn.functional.pixel_shuffle(torch.from_numpy(x).float(), 8)[0].permute(1, 2, 0).numpy()
    np.testing.assert_array_equal(np.round((back + 1.0) * 127.5).astype(np.uint8), image)


def test_premise_benchmark_end_to_end(tmp_path, capsys):
    out = tmp_path / "premise.json"
    argv = ["--size", "small", "--train-images", "2", "--target-images", "1", "--iters", "2", "--seeds", "0,1"]
    res = bench_premise.main([*argv, "--work", str(tmp_path / "work"), "--json", str(out)])

    assert json.loads(out.read_text())["seeds"] == [0, 1]
    targets = ["val", "val-night", "val-fog", "mean over targets"]
    for arm in bench_premise.ARMS:
        for t in targets:
            row = res["arms"][arm][t]
            values = [row["miou"][s] for s in ("0", "1")]
            assert row["mean"] == pytest.approx(np.mean(values))
            assert row["std"] == pytest.approx(np.std(values, ddof=1))
    for model in ("mini", "tiny"):
        for t in targets[:3]:
            assert res["xattn"][model][t]["pairs"] > 0 and res["xattn"][model][t]["ratio"] > 0
            assert res["xattn"][model][t]["chance"] > 0

    # the pixels baseline: one 192-channel layer per branch, the mini cache's views and labels
    pixels, mini = (
        CacheReader(tmp_path / "work/cache/pixels/val-fog"),
        CacheReader(tmp_path / "work/cache/mini/val-fog"),
    )
    assert pixels.record.model.name == "pixels" and pixels.ids == mini.ids
    assert pixels.branches == mini.branches
    assert pixels.feature_names() == [f"{b}/up3.res2" for b in mini.branches]
    assert pixels.array_shape("uncond/up3.res2") == (1, 192, 8, 8)
    np.testing.assert_array_equal(pixels.orig_label(0), mini.orig_label(0))
    np.testing.assert_array_equal(
        pixels.read(0, [schema.LABELS])[schema.LABELS], mini.read(0, [schema.LABELS])[schema.LABELS]
    )

    shown = capsys.readouterr().out
    assert "| pixels | " in shown and "Cross-attention inside/outside" in shown and "load average" in shown
