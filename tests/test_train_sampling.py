"""The sample stream: one view per image per visit, rare-class sampling (RCS) by its temperature, feature flips."""

import json
import math

import numpy as np
import torch
from helpers import FAST_TRAIN, SMALL
from safetensors.torch import load_file

from diffseg.cache import CacheReader
from diffseg.cache.schema import LABELS
from diffseg.cache.synthetic import make_cache
from diffseg.core.classes import NUM_CLASSES
from diffseg.stages.train import job as train
from diffseg.stages.train.classstats import class_counts
from diffseg.stages.train.order import build_order
from diffseg.stages.train.rcs import RareClassSampler, default_min_pixels
from diffseg.stages.train.sampling import StreamOrder, flip_mask, image_groups
from diffseg.stages.train.step import flip_samples


def _views_cache(tmp_path, images=4, views=3):
    ids = [f"gta/{i:03d}#v{k}" for i in range(images) for k in range(views)]
    return make_cache(tmp_path / "views", n=images * views, ids=ids, **SMALL)


def _order(cache, **options):
    cfg, _ = train.resolve_config(cache=cache, **{**FAST_TRAIN, **options})
    reader = CacheReader(cache)
    return cfg, build_order(cfg, reader, reader.complete_indices())


def test_each_visit_takes_one_view_of_the_image_seeded_and_varying(tmp_path):
    cache = _views_cache(tmp_path)
    assert image_groups(CacheReader(cache).ids) == [[0, 1, 2], [3, 4, 5], [6, 7, 8], [9, 10, 11]]
    _, (order, stats) = _order(cache, rcs_temperature=0)
    assert stats is None and isinstance(order, StreamOrder)
    epochs = [[order[p] for p in range(e * 4, e * 4 + 4)] for e in range(12)]
    for epoch in epochs:  # an epoch is over the 4 images, one view of each
        assert sorted(i // 3 for i in epoch) == [0, 1, 2, 3]
    views_of_image0 = [next(i for i in epoch if i // 3 == 0) for epoch in epochs]
    assert len(set(views_of_image0)) == 3  # the view changes across visits
    _, (again, _) = _order(cache, rcs_temperature=0)
    assert [again[p] for p in range(48)] == [i for e in epochs for i in e]  # seeded
    _, (other, _) = _order(cache, rcs_temperature=0, seed=1)
    assert [other[p] for p in range(48)] != [i for e in epochs for i in e]


def test_temperature_zero_is_the_plain_permutation(tmp_path):
    cache = make_cache(tmp_path / "one", n=5, **SMALL)
    cfg, (order, stats) = _order(cache, rcs_temperature=0, seed=3)
    assert cfg.rcs_temperature == 0 and stats is None
    perms = [torch.randperm(5, generator=torch.Generator().manual_seed(3 + e)).tolist() for e in range(2)]
    assert [order[p] for p in range(10)] == perms[0] + perms[1]


def test_class_counts_are_the_labels_pixels_and_remembered(tmp_path, monkeypatch):
    monkeypatch.setenv("DIFFSEG_CACHE_DIR", str(tmp_path / "home"))
    cache = make_cache(tmp_path / "c", n=4, classes=(0, 3, 12), **SMALL)
    reader = CacheReader(cache)
    counts, _ = class_counts(reader, [0, 1, 2, 3])
    for i in range(4):
        label = reader.read(i, [LABELS])[LABELS]
        assert counts[i].tolist() == [int((label == c).sum()) for c in range(NUM_CLASSES)]
    (sidecar,) = (tmp_path / "home" / "class-stats").glob("*.json")
    record = json.loads(sidecar.read_text())
    record["counts"][0][0] += 1000  # a remembered value is read back, not recounted
    sidecar.write_text(json.dumps(record))
    assert class_counts(reader, [0, 1, 2, 3])[0][0, 0] == counts[0, 0] + 1000


def test_sampled_classes_follow_the_temperature():
    # 6 images, classes 0 (common), 1, 2 (rare): f = (0.7, 0.2, 0.1)
    counts = np.zeros((6, NUM_CLASSES), np.int64)
    counts[:, 0] = 700
    counts[:3, 1] = 400
    counts[3:5, 2] = 300
    f = counts.sum(axis=0)[:3] / counts.sum()
    draws = 6000
    for T in (0.1, 0.5):
        want = np.exp((1 - f) / T) / np.exp((1 - f) / T).sum()
        rcs = RareClassSampler(counts, [[i] for i in range(6)], temperature=T, min_pixels=100, seed=0)
        drawn = [rcs.draw(p) for p in range(draws)]
        got = np.bincount([c for c, _ in drawn], minlength=3)[:3] / draws
        tol = 5 * np.sqrt(want * (1 - want) / draws)  # 5 standard errors of a frequency
        assert np.all(np.abs(got - want) <= tol), (T, got, want)
        for c, i in drawn[:200]:
            assert counts[i, c] >= 100  # the image holds the class
        assert [rcs.draw(p) for p in range(50)] == drawn[:50]  # seeded by position


def test_rcs_prefers_a_view_that_holds_the_class():
    counts = np.zeros((4, NUM_CLASSES), np.int64)
    counts[:, 0] = 500
    counts[1, 5] = 200  # image 0 = samples 0, 1: only view 1 holds class 5
    counts[3, 5] = 5  # image 1 = samples 2, 3: the class summed over views is 5 < min_pixels
    rcs = RareClassSampler(counts, [[0, 1], [2, 3]], temperature=1.0, min_pixels=100, seed=0)
    assert rcs.images[5].tolist() == [0]
    picks = [rcs.draw(p) for p in range(300)]
    assert {i for c, i in picks if c == 5} == {1}
    assert {i for c, i in picks if c == 0} == {0, 1, 2, 3}


def test_rcs_is_on_for_several_classes_off_for_one(tmp_path):
    many = make_cache(tmp_path / "many", n=3, **SMALL)
    cfg, (order, stats) = _order(many)
    assert cfg.rcs_temperature == 0.01 and isinstance(order, RareClassSampler)
    assert cfg.rcs_min_pixels == default_min_pixels((32, 32)) == 12  # 3000 px x (32 * 32) / 512^2
    assert stats is not None and math.isclose(sum(stats["probabilities"].values()), 1.0)
    one = make_cache(tmp_path / "one", n=3, classes=(4,), **SMALL)
    cfg, (order, stats) = _order(one)
    assert cfg.rcs_temperature == 0 and stats is None


def test_flip_samples_mirrors_features_and_label_together():
    x = torch.arange(2 * 1 * 1 * 1 * 3, dtype=torch.float32).view(2, 1, 1, 1, 3)
    label = torch.tensor([[[1, 2, 3]], [[4, 5, 6]]])
    feats = {"uncond": {"l": x}, "cond": {"l": x + 10}}
    out, lab = flip_samples(feats, label, torch.tensor([False, True]))
    assert out["uncond"]["l"].flatten().tolist() == [0, 1, 2, 5, 4, 3]
    assert out["cond"]["l"].flatten().tolist() == [10, 11, 12, 15, 14, 13]
    assert lab.tolist() == [[[1, 2, 3]], [[6, 5, 4]]]


def test_flip_mask_is_seeded_by_position_with_its_probability():
    m = flip_mask(range(4000), seed=0, p=0.3)
    assert abs(float(m.float().mean()) - 0.3) < 5 * math.sqrt(0.3 * 0.7 / 4000)
    assert torch.equal(flip_mask(range(10, 20), seed=0, p=0.3), m[10:20])  # placement-independent
    assert not flip_mask(range(100), seed=0, p=0.0).any() and flip_mask(range(100), seed=0, p=1.0).all()


def test_flip_features_changes_training_and_is_recorded(tmp_path):
    cache = make_cache(tmp_path / "c", n=3, signal=2.0, **SMALL)
    runs = {p: train.main(cache=cache, out=tmp_path / f"p{p}", flip_features=p, **FAST_TRAIN) for p in (0.0, 1.0)}
    a, b = (load_file(runs[p] / "weights.safetensors") for p in (0.0, 1.0))
    assert any(not torch.equal(a[k], b[k]) for k in a)
    assert json.loads((runs[1.0] / "config.json").read_text())["config"]["flip_features"] == 1.0
