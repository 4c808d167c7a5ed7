"""Pre-training captions name the classes present in the masked prompts' own words."""

import re

import numpy as np
import pytest

from diffseg.core.classes import CLASS_NAMES
from diffseg.data.demo_pretrain import PRETRAIN_STYLES
from diffseg.pipeline.pretrain.captions import STYLE_WORDS, caption, present_classes
from diffseg.pipeline.prompts import class_prompt, class_token_positions
from diffseg.pipeline.tokenizer import build_tokenizer


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
