"""Pre-training images never repeat an evaluation sample of the demo dataset (the pre-trained model must never have seen an image it is evaluated on)."""

import hashlib

import numpy as np
import pytest

from diffseg.core.classes import present_classes
from diffseg.data.demo.dataset import DEMO_COUNTS, DEMO_SPLITS, render_sample
from diffseg.data.demo.pretrain import PRETRAIN_STREAM, PRETRAIN_STYLES, pretrain_rng, render_pretrain
from diffseg.pretrain.captions import MIN_FRACTION
from diffseg.pretrain.config import PretrainConfig


def _state(rng: np.random.Generator) -> bytes:
    return rng.bit_generator.state["state"]["state"].to_bytes(16, "little")


def test_stream_word_is_no_split_index():
    # the second entropy word is the split index for evaluation samples, PRETRAIN_STREAM here
    assert PRETRAIN_STREAM >= 2**16 > len(DEMO_SPLITS)
    assert "dev" in DEMO_SPLITS  # the tuning split is checked like every other split below


def test_no_pretraining_generator_equals_an_evaluation_generator():
    # every split (train: a demo head trains on it; dev: the demo is tuned on it), seeds 0-2,
    # 4x the default counts
    evaluation = {
        _state(np.random.default_rng((seed, s, i)))
        for seed in range(3)
        for s in range(len(DEMO_SPLITS))
        for i in range(4 * max(DEMO_COUNTS.values()))
    }
    pretraining = {_state(pretrain_rng(seed, i)) for seed in range(3) for i in range(4000)}
    assert len(pretraining) == 3 * 4000 and not evaluation & pretraining


def test_no_pretraining_image_or_scene_equals_an_evaluation_sample():
    def digest(a: np.ndarray) -> str:
        return hashlib.sha256(a.tobytes()).hexdigest()

    images, labels = set(), set()
    for split in DEMO_SPLITS:
        for i in range(DEMO_COUNTS[split]):
            image, label = render_sample(0, split, i)
            images.add(digest(image))
            labels.add(digest(label))
    for i in range(100):
        for z in (PretrainConfig().zoom, 4.0):  # the shipped recipe, and close-ups as tried
            image, label, _ = render_pretrain(0, i, zoom=z)
            assert digest(image) not in images and digest(label) not in labels, (i, z)


def test_styles_cycle_and_images_are_reproducible():
    styles = [render_pretrain(0, i, (64, 64))[2] for i in range(2 * len(PRETRAIN_STYLES))]
    assert styles == list(PRETRAIN_STYLES) * 2
    a, b = render_pretrain(3, 7, (64, 64)), render_pretrain(3, 7, (64, 64))
    assert np.array_equal(a[0], b[0]) and a[0].shape == (64, 64, 3) and a[0].dtype == np.uint8


def test_out_of_range_seed_is_refused():
    with pytest.raises(AssertionError):
        pretrain_rng(2**32, 0)  # would become a two-word entropy and lose the proof


def test_close_ups_show_fewer_classes_and_leave_the_other_images_alone():
    n = len(PRETRAIN_STYLES)
    plain, close = [], []
    for i in range(4 * n):
        a, b = render_pretrain(0, i, (64, 64)), render_pretrain(0, i, (64, 64), zoom=4.0)
        assert b[0].shape == (64, 64, 3) and b[1].shape == (64, 64) and b[2] == a[2]
        if (i // n) % 2 == 0:  # every other style turn stays the full scene, drawn exactly as without zoom
            assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
        else:
            plain.append(len(present_classes(a[1], MIN_FRACTION)))
            close.append(len(present_classes(b[1], MIN_FRACTION)))
    assert np.mean(close) < np.mean(plain)


def test_variety_leaves_kinds_out_and_changes_nothing_when_zero():
    from diffseg.data.demo.scene import DROPPABLE, draw_scene

    for i in range(10):  # variety 0 (the shipped recipe, and the demo's own splits): unchanged
        a, b = render_pretrain(0, i, (64, 64)), render_pretrain(0, i, (64, 64), variety=0.0)
        assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
    plain = draw_scene(np.random.default_rng(5), 96, 96)
    bare = draw_scene(np.random.default_rng(5), 96, 96, frozenset(DROPPABLE))
    assert {2, 13, 11} & set(np.unique(plain.label).tolist())  # building, car or person
    assert set(np.unique(bare.label).tolist()) <= {0, 1, 9, 10}  # road, sidewalk, terrain, sky
    with pytest.raises(AssertionError):
        draw_scene(np.random.default_rng(0), 32, 32, frozenset({"road"}))
    # which classes show now varies: buildings in some images, not in others
    shown = [2 in present_classes(render_pretrain(0, i, (64, 64), variety=0.5)[1], MIN_FRACTION) for i in range(40)]
    assert 5 < sum(shown) < 35
