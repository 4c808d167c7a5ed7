"""Seeded per-sample dropout: same mask for a sample whatever batch it sits in."""

import pytest
import torch

from diffseg.nn import Segmentor
from diffseg.nn.dropout import SeededDropout2d, seeded_dropout2d


def test_mask_depends_only_on_the_sample_seed():
    x = torch.ones(2, 1000, 2, 2)
    seeds = torch.tensor([11, 22])
    both = seeded_dropout2d(x, 0.1, seeds)
    split = torch.cat([seeded_dropout2d(x[:1], 0.1, seeds[:1]), seeded_dropout2d(x[1:], 0.1, seeds[1:])])
    assert torch.equal(both, split)
    assert not torch.equal(both[0], both[1])
    assert torch.equal(seeded_dropout2d(x, 0.1, torch.tensor([22, 11])), both.flip(0))
    kept = both[:, :, 0, 0]
    assert kept.unique().tolist() == pytest.approx([0.0, 1 / 0.9])
    assert 0.05 < (kept == 0).float().mean() < 0.15
    assert torch.equal(both[:, :, :1, :1].expand_as(both), both)  # whole channels are dropped


def test_module_modes():
    drop = SeededDropout2d(0.5)
    x = torch.ones(3, 64, 1, 1)
    assert torch.equal(drop.eval()(x, torch.tensor([1, 2, 3])), x)
    drop.train()
    assert (drop(x) == 0).any()  # None -> an ordinary Dropout2d draw
    assert torch.equal(drop(x, torch.tensor([1, 2, 3])), drop(x, torch.tensor([1, 2, 3])))


def test_segmentor_batch_split_gives_same_logits():
    torch.manual_seed(0)
    specs = {"up2.res0": {"stride": 16, "channels": 3}, "up3.res0": {"stride": 8, "channels": 2}}
    seg = Segmentor(specs, n_steps=2, fusion="light").eval()
    seg.head.dropout.train()  # BatchNorm statistics are per batch; only the dropout is under test
    g = torch.Generator().manual_seed(1)
    feats = {
        k: torch.randn(2, 2, v["channels"], 64 // v["stride"], 64 // v["stride"], generator=g) for k, v in specs.items()
    }
    seeds = torch.tensor([5, 6])
    both = seg(feats, dropout_seeds=seeds)
    split = torch.cat(
        [seg({k: v[i : i + 1] for k, v in feats.items()}, dropout_seeds=seeds[i : i + 1]) for i in range(2)]
    )
    torch.testing.assert_close(both, split, rtol=1e-5, atol=1e-6)
    assert not torch.allclose(both, seg(feats, dropout_seeds=torch.tensor([7, 8])))
