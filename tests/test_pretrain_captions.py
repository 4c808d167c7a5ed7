"""Pre-training captions name the classes present in the masked prompts' own words."""

import re

import numpy as np
import pytest

from diffseg.core.classes import CLASS_NAMES, present_classes
from diffseg.data.demo.pretrain import PRETRAIN_STYLES
from diffseg.pipeline.prompts import class_prompt, class_token_positions
from diffseg.pipeline.tokenizer import build_tokenizer
from diffseg.pretrain.captions import COLOR_WORDS, STYLE_WORDS, caption, dominant_colors


@pytest.fixture(scope="module")
def tokenizer():
    return build_tokenizer()


def test_present_classes_uses_a_pixel_share():
    label = np.full((10, 10), 10, np.uint8)  # sky
    label[0, 0] = 13  # one car pixel: 1 %
    label[1, :5] = 0  # road: 5 %
    assert present_classes(label, min_fraction=0.02) == (0, 10)
    assert present_classes(label, min_fraction=0.01) == (0, 10, 13)


def test_captions_vary_and_name_only_present_classes(tokenizer):
    rng = np.random.default_rng(0)
    present = (0, 2, 10, 13, 14)
    masked_prompts = {class_prompt(k) for k in present}
    caps = [caption(rng, present, style) for style in PRETRAIN_STYLES for _ in range(40)]
    assert "" in caps and len(set(caps)) > 100 and masked_prompts & set(caps)
    for c in caps:
        if not c or c in masked_prompts:
            continue
        parts = [p.strip() for p in re.split("[,;:]", c)]
        named = [CLASS_NAMES.index(p) for p in parts if p in CLASS_NAMES]
        assert named and set(named) <= set(present), c
        # each class name is one token, found where the extractor looks for it
        positions = class_token_positions(tokenizer, c, named)
        assert all(len(p) == 1 for p in positions.values()), c
    assert any("night" in c for c in caps) and any("fog" in c for c in caps) and any("dusk" in c for c in caps)


def test_every_caption_word_is_one_token(tokenizer):
    words = {w for ws in STYLE_WORDS.values() for p in ws for w in p.split()}
    words |= {"a", "photo", "of", "city", "street", "scene", "view"}
    for w in words:
        assert len(tokenizer(w, add_special_tokens=False).input_ids) == 1, w


def test_dominant_colors_name_what_most_pixels_show():
    image = np.zeros((4, 4, 3), np.uint8)
    label = np.full((4, 4), 10, np.uint8)  # sky
    image[:] = (128, 173, 230)  # light blue
    label[2:, :] = 13  # car: 6 red pixels, 2 black ones
    image[2:, :] = (166, 31, 26)
    image[3, :2] = (20, 20, 20)
    colors = dominant_colors(image, label)
    assert COLOR_WORDS[colors[10]] == "blue" and COLOR_WORDS[colors[13]] == "red"
    assert colors[0] == -1 and colors.shape == (19,)


def test_colour_words_off_draw_the_shipped_captions():
    # the shipped weights were trained on captions without colours: p_color 0 must not change a draw
    colors = np.arange(19, dtype=np.int8) % len(COLOR_WORDS)
    present = (0, 2, 10, 13, 14)
    a, b = np.random.default_rng(3), np.random.default_rng(3)
    assert [caption(a, present, "fog") for _ in range(200)] == [
        caption(b, present, "fog", colors, 0.0) for _ in range(200)
    ]


def test_colour_words_precede_their_class_and_keep_it_findable(tokenizer):
    colors = np.arange(19, dtype=np.int8) % len(COLOR_WORDS)
    present = (0, 2, 10, 13, 14)
    rng = np.random.default_rng(0)
    caps = [caption(rng, present, "source", colors, 1.0) for _ in range(200)]
    listed = [c for c in caps if c and c not in {class_prompt(k) for k in present}]
    assert listed
    for c in listed:
        for part in re.split("[,;:]", c):
            words = part.split()
            if words and words[-1] in CLASS_NAMES:  # a listed class: its colour word comes first
                assert len(words) >= 2 and words[-2] == COLOR_WORDS[colors[CLASS_NAMES.index(words[-1])]], c
        named = sorted((k for k in present if f" {CLASS_NAMES[k]}" in c), key=lambda k: c.index(f" {CLASS_NAMES[k]}"))
        assert all(len(p) == 1 for p in class_token_positions(tokenizer, c, named).values()), c
    for w in COLOR_WORDS:
        assert len(tokenizer(w, add_special_tokens=False).input_ids) == 1, w


def test_every_class_captions_name_all_19_and_draw_only_the_absent_ones_colours(tokenizer):
    colors = np.arange(19, dtype=np.int8) % len(COLOR_WORDS)
    present = (0, 2, 10, 13)
    a, b = np.random.default_rng(5), np.random.default_rng(5)
    assert [caption(a, present, "fog", colors, 1.0) for _ in range(100)] == [
        caption(b, present, "fog", colors, 1.0, 0.0) for _ in range(100)
    ]  # p_all 0: the colour-word captions' draws, unchanged
    rng = np.random.default_rng(0)
    caps = [caption(rng, present, "night", colors, 1.0, 1.0) for _ in range(300)]
    listed = [c for c in caps if c and c not in {class_prompt(k) for k in present}]
    assert len(listed) > 150
    absent_words = set()
    for c in listed:
        colour_of = {}  # class -> the word before its name
        for part in re.split("[,;:]", c):
            for k, name in enumerate(CLASS_NAMES):
                if part.strip().endswith(" " + name):
                    colour_of[k] = part.strip()[: -len(name)].split()[-1]
        assert set(colour_of) == set(range(19)), c  # every class named, each after a colour word
        for k, word in colour_of.items():
            assert word in COLOR_WORDS, c
            if k in present:
                assert word == COLOR_WORDS[colors[k]], c  # a present class keeps its own colour
            else:
                absent_words.add(word)
        assert len(tokenizer(c).input_ids) <= tokenizer.model_max_length, c  # nothing truncated
    assert len(absent_words) == len(COLOR_WORDS)  # absent classes: drawn over every colour
