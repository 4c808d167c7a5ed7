"""The built-in demo dataset: deterministic, all splits, all classes, random access, shifted styles."""

import numpy as np
import pytest

from diffseg.core.errors import DiffsegError
from diffseg.data import DEMO_SPLITS, open_dataset
from diffseg.data.demo.dataset import DEMO_COUNTS, render_sample


def test_splits_counts_and_ids():
    assert set(DEMO_COUNTS) == set(DEMO_SPLITS)  # every split has its size
    for split in DEMO_SPLITS:
        ds = open_dataset("demo", split=split)
        assert len(ds) == DEMO_COUNTS[split] and ds.root is None and ds.name == "demo"
        assert ds.ids == [f"{split}/{i:04d}" for i in range(DEMO_COUNTS[split])]
    assert len(open_dataset("demo", split="val", demo_count=3)) == 3
    with pytest.raises(DiffsegError, match="unknown split"):
        open_dataset("demo", split="test")


def test_deterministic_and_seeded():
    a = open_dataset("demo", split="train").load(5)
    b = open_dataset("demo", split="train").load(5)
    assert a.id == "train/0005"
    np.testing.assert_array_equal(a.image, b.image)
    np.testing.assert_array_equal(a.label, b.label)
    c = open_dataset("demo", split="train", seed=1).load(5)
    assert not np.array_equal(a.label, c.label)
    v = open_dataset("demo", split="val").load(5)  # same index, other split: another scene
    assert not np.array_equal(a.label, v.label)


def test_sizes_and_types():
    ds = open_dataset("demo", split="val-fog", demo_size=(96, 64), demo_count=2)
    s = ds.load(1)
    assert s.image.shape == (64, 96, 3) and s.image.dtype == np.uint8
    assert s.label.shape == (64, 96) and s.label.dtype == np.uint8
    assert ds.label_size(1) == (64, 96) and ds.check(1) == []
    big = render_sample(0, "train", 0, (256, 192))
    assert big[0].shape == (192, 256, 3)


def test_class_coverage():
    counts = np.zeros(256, np.int64)
    for i in range(DEMO_COUNTS["train"]):
        _, label = render_sample(0, "train", i)
        counts += np.bincount(label.ravel(), minlength=256)
    assert counts[19:].sum() == 0  # no ignore needed: every pixel is a class
    assert (counts[:19] > 0).all(), np.flatnonzero(counts[:19] == 0)
    shares = counts[:19] / counts.sum()
    assert shares[0] > 0.15 and shares[10] > 0.05 and shares[13] > 0.03  # road, sky, car dominate as usual


def test_styles_shift_the_image_not_the_labels():
    day = [render_sample(0, "val", i)[0].astype(float) for i in range(8)]
    night = [render_sample(0, "val-night", i)[0].astype(float) for i in range(8)]
    fog = [render_sample(0, "val-fog", i)[0].astype(float) for i in range(8)]
    assert np.mean(night) < 0.4 * np.mean(day)  # dark
    assert np.mean([n[..., 2].mean() - n[..., 0].mean() for n in night]) > 0  # blue cast
    assert np.mean([f.std() for f in fog]) < 0.8 * np.mean([d.std() for d in day])  # low contrast


def test_not_colour_thresholdable():
    """The best per-pixel colour -> class lookup (fit on the same pixels) stays far from perfect."""
    images, labels = zip(*(render_sample(0, "train", i) for i in range(8)))
    q = (np.concatenate([im.reshape(-1, 3) for im in images]) // 32).astype(np.int64)
    key = q[:, 0] * 64 + q[:, 1] * 8 + q[:, 2]
    lab = np.concatenate([lb.ravel() for lb in labels]).astype(np.int64)
    joint = np.bincount(key * 19 + lab, minlength=512 * 19).reshape(512, 19)
    accuracy = joint.max(1).sum() / lab.size
    assert accuracy < 0.85


def test_each_sample_renders_on_its_own():
    """Random access: a sample depends on (seed, split, index) alone, not on what rendered before it,
    so a loader thread or a worker process renders any index without replaying the ones before it."""
    forward = [render_sample(0, "val-night", i, (64, 48)) for i in range(6)]
    backward = [render_sample(0, "val-night", i, (64, 48)) for i in reversed(range(6))][::-1]
    for (image, label), (image2, label2) in zip(forward, backward):
        np.testing.assert_array_equal(image, image2)
        np.testing.assert_array_equal(label, label2)
    assert len({label.tobytes() for _, label in forward}) == 6  # and each index is a scene of its own


def test_split_file(tmp_path):
    ids = tmp_path / "ids.txt"
    ids.write_text("val/0003\nval/0001\n")
    ds = open_dataset("demo", split="val", split_file=ids)
    assert ds.ids == ["val/0001", "val/0003"]
    np.testing.assert_array_equal(ds.load(1).label, render_sample(0, "val", 3)[1])
    ids.write_text("val/0099\n")
    with pytest.raises(DiffsegError, match="val/0099"):
        open_dataset("demo", split="val", split_file=ids)


def test_dev_split_is_its_own_scenes_in_the_source_style():
    # tuning happens on dev: none of its scenes may be a training or reporting sample
    def scenes(split: str, n: int) -> set[bytes]:
        return {render_sample(0, split, i, (64, 64))[1].tobytes() for i in range(n)}

    dev = scenes("dev", DEMO_COUNTS["dev"])
    assert len(dev) == DEMO_COUNTS["dev"]
    for split in ("train", "val", "val-night", "val-fog"):
        assert not dev & scenes(split, DEMO_COUNTS[split]), split
    dev_mean = np.mean([render_sample(0, "dev", i)[0].mean() for i in range(8)])
    night_mean = np.mean([render_sample(0, "val-night", i)[0].mean() for i in range(8)])
    assert dev_mean > 1.5 * night_mean  # daylight, like train and val
