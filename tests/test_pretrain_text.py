"""The pre-training's text side: token embeddings that keep class words apart, and a frozen encoder."""

import pytest
import torch

from diffseg.core.classes import CLASS_NAMES
from diffseg.pipeline.models import load_models
from diffseg.pipeline.tokenizer import build_tokenizer
from diffseg.pretrain.config import PretrainConfig, quick_config
from diffseg.pretrain.unet import build_unet_and_text
from diffseg.stages.pretrain import main as pretrain


@pytest.fixture(autouse=True)
def _fingerprint_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("DIFFSEG_CACHE_DIR", str(tmp_path / "fpcache"))


def _word_cos(text_encoder, tokenizer) -> float:
    """Mean cosine between the outputs of different class words at one caption position."""
    names = [n for n in CLASS_NAMES if " " not in n]
    ids = torch.tensor(
        [tokenizer(f"a photo of a city street, {n}, sky", padding="max_length", max_length=77).input_ids for n in names]
    )
    with torch.no_grad():
        v = torch.nn.functional.normalize(text_encoder(ids)[0][:, 8].float(), dim=-1)
    cos = v @ v.T
    return float(cos[~torch.eye(len(names), dtype=torch.bool)].mean())


def test_clip_init_merges_class_words_and_a_wide_token_init_keeps_them_apart():
    tokenizer = build_tokenizer()
    _, clip_init = build_unet_and_text(PretrainConfig(), tokenizer)
    _, wide = build_unet_and_text(PretrainConfig(token_init_std=1.0), tokenizer)
    assert _word_cos(clip_init, tokenizer) > 0.8 > 0.3 > _word_cos(wide, tokenizer)


def test_a_frozen_text_encoder_ships_as_initialised(tmp_path):
    cfg = quick_config(text_lr=0.0, token_init_std=1.0, color_words=0.8)
    model = load_models(str(pretrain(cfg, tmp_path / "p", echo=False)))
    unet0, text0 = build_unet_and_text(cfg, model.tokenizer)
    for name, p in text0.state_dict().items():
        assert torch.equal(model.text_encoder.state_dict()[name].float(), p.half().float()), name
    changed = [
        not torch.equal(model.unet.state_dict()[k].float(), v.half().float()) for k, v in unet0.state_dict().items()
    ]
    assert any(changed)  # the U-Net did train
