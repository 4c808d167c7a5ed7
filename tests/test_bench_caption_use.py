"""experiments/bench_caption_use.py end to end on `tiny` (its numbers are measured by running it)."""

import math

import pytest

from experiments import bench_caption_use


def test_caption_use_runs_and_pairs_the_three_captions(capsys):
    import torch

    threads = str(torch.get_num_threads())  # the benchmark sets torch's threads: keep this process's
    res = bench_caption_use.main(
        ["--model", "tiny", "--images", "4", "--zoom", "4", "--variety", "0.5", "--color-words", "--threads", threads]
    )
    assert list(res["loss"]) == list(res["attention"]) == ["t<1000", "t<300", "t<100"]
    for row in res["loss"].values():
        assert set(row) == {"true", "empty", "other", "spread"}
        assert all(math.isfinite(v) and v > 0 for v in row.values())
    for a in res["attention"].values():
        assert a["tokens"] == 77 and 0 < a["entropy"] <= math.log(77) + 1e-6
        assert 0 < a["share"] < 1 and math.isfinite(a["ratio"]) and a["ratio"] > 0
        assert math.isfinite(a["chance"]) and a["chance"] > 0
    out = capsys.readouterr().out
    assert "| t < 100 |" in out and "colour words" in out and "class map inside/outside" in out


def test_attention_stats_reads_share_and_ratio_off_the_head_mean_maps():
    import numpy as np
    import torch

    class Watched:  # a processor after one forward: head-mean probabilities [B, N = 2 x 2, T = 4]
        probs_BNT = torch.tensor([[[0.1, 0.6, 0.2, 0.1]] * 2 + [[0.4, 0.1, 0.2, 0.3]] * 2])

    label = np.array([[5, 5], [7, 7]], np.uint8)  # class 5 on the top row, class 7 on the bottom row
    shares, ratios, chance = bench_caption_use.attention_stats({"l": Watched()}, [{5: (1,), 7: (2, 3)}], [label])
    assert shares == [pytest.approx((0.9 + 0.9 + 0.6 + 0.6) / 4)]
    # class 5's map (token 1) is 0.6 inside, 0.1 outside; class 7's (tokens 2-3, mean) 0.25 inside, 0.15 outside
    assert ratios == [pytest.approx(6.0), pytest.approx(0.25 / 0.15)]
    # chance: class 7's map on class 5's mask (0.15 / 0.25), class 5's map on class 7's (0.1 / 0.6)
    assert chance == [pytest.approx(0.15 / 0.25), pytest.approx(0.1 / 0.6)]


def test_spread_attention_gives_every_pixel_the_same_cross_attention_output():
    import torch

    from diffseg.pipeline.models import load_models

    unet = load_models("tiny").unet
    attn = unet.up_blocks[1].attentions[0].transformer_blocks[0].attn2
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 16, attn.to_q.in_features, generator=g)
    context = torch.randn(2, 77, attn.to_k.in_features, generator=g)
    with torch.no_grad():
        plain = attn(x, encoder_hidden_states=context)
        original = bench_caption_use.spread_cross_attention(unet)
        spread = attn(x, encoder_hidden_states=context)
        unet.set_attn_processor(original)
        again = attn(x, encoder_hidden_states=context)
    assert not torch.allclose(plain[:, :1].expand_as(plain), plain)  # ordinary attention differs per pixel
    assert torch.allclose(spread[:, :1].expand_as(spread), spread, atol=1e-6)  # spread: one output per image
    assert not torch.allclose(spread[0], spread[1])  # ... of its own
    torch.testing.assert_close(again, plain)  # the original processors are back
