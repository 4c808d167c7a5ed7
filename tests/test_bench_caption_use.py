"""benchmarks/bench_caption_use.py end to end on `tiny` (its numbers are measured by running it)."""

import math

from benchmarks import bench_caption_use


def test_caption_use_runs_and_pairs_the_three_captions(capsys):
    import torch

    threads = str(torch.get_num_threads())  # the benchmark sets torch's threads: keep this process's
    res = bench_caption_use.main(
        ["--model", "tiny", "--images", "4", "--zoom", "4", "--variety", "0.5", "--color-words", "--threads", threads]
    )
    assert list(res) == ["t<1000", "t<300", "t<100"]
    for row in res.values():
        assert set(row) == {"true", "empty", "other", "spread"}
        assert all(math.isfinite(v) and v > 0 for v in row.values())
    out = capsys.readouterr().out
    assert "| t < 100 |" in out and "colour words" in out


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
