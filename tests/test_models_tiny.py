"""The built-in tiny model: SD 2.1's block structure, frozen, and a faithful save/load."""

import pytest
import torch

from diffseg.pipeline.models import FrozenModels, load_models


@pytest.fixture(scope="module")
def tiny():
    return load_models("tiny")


@pytest.fixture(scope="module")
def saved(tiny, tmp_path_factory):
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DIFFSEG_CACHE_DIR", str(tmp_path_factory.mktemp("fpcache")))
        directory = tiny.save_pretrained(tmp_path_factory.mktemp("tiny") / "model")
        yield directory, load_models(str(directory))


def test_block_structure_matches_sd21(tiny):
    unet = tiny.unet
    assert [type(b).__name__ for b in unet.down_blocks] == ["CrossAttnDownBlock2D"] * 3 + ["DownBlock2D"]
    assert [type(b).__name__ for b in unet.up_blocks] == ["UpBlock2D"] + ["CrossAttnUpBlock2D"] * 3
    assert not hasattr(unet.up_blocks[0], "attentions")
    assert len(unet.up_blocks[0].resnets) == 3
    for i in (1, 2, 3):
        block = unet.up_blocks[i]
        assert len(block.resnets) == 3 and len(block.attentions) == 3
        for attn in block.attentions:
            assert isinstance(attn.proj_in, torch.nn.Linear)  # use_linear_projection
            tb = attn.transformer_blocks[0]
            assert tb.attn2.is_cross_attention and tb.attn2.upcast_attention
    assert unet.config.cross_attention_dim == tiny.text_encoder.config.hidden_size == 32


def test_feature_sizes_and_strides_at_128px(tiny):
    sizes = {}
    hooks = [
        tiny.unet.up_blocks[i]
        .resnets[2]
        .conv2.register_forward_hook(lambda m, a, out, i=i: sizes.__setitem__(i, tuple(out.shape[1:])))
        for i in range(4)
    ]
    ids = tiny.tokenizer([""], padding="max_length", max_length=77, return_tensors="pt").input_ids
    with torch.no_grad():
        emb = tiny.text_encoder(ids)[0]
        tiny.unet(torch.zeros(1, 4, 16, 16), 10, emb)
    for h in hooks:
        h.remove()
    # up0 at 1/64, up1 1/32, up2 1/16, up3 1/8 of the 128 px image
    assert sizes == {0: (64, 2, 2), 1: (64, 4, 4), 2: (64, 8, 8), 3: (32, 16, 16)}
    assert emb.shape == (1, 77, 32)


def test_frozen_and_scheduler(tiny):
    assert isinstance(tiny, FrozenModels) and tiny.name == "tiny"
    for module in (tiny.unet, tiny.vae, tiny.text_encoder):
        assert not module.training
        assert not any(p.requires_grad for p in module.parameters())
    cfg = tiny.scheduler.config
    assert type(tiny.scheduler).__name__ == "DDIMScheduler"
    assert (cfg.num_train_timesteps, cfg.beta_start, cfg.beta_end, cfg.beta_schedule) == (
        1000,
        0.00085,
        0.012,
        "scaled_linear",
    )
    assert (cfg.clip_sample, cfg.set_alpha_to_one, cfg.steps_offset) == (False, False, 1)
    assert tiny.prediction_type == "v_prediction"
    assert tiny.vae.config.scaling_factor == 0.18215
    with torch.no_grad():
        latent = tiny.vae.encode(torch.zeros(1, 3, 128, 128)).latent_dist.mean
    assert latent.shape == (1, 4, 16, 16)


def test_builtin_is_deterministic(tiny):
    torch.manual_seed(123)
    state = torch.random.get_rng_state()
    again = load_models("tiny")
    assert torch.equal(torch.random.get_rng_state(), state)  # the caller's RNG is untouched
    assert again.fingerprint == tiny.fingerprint
    assert torch.equal(again.unet.conv_in.weight, tiny.unet.conv_in.weight)


def test_save_and_load_by_path_is_identical(tiny, saved):
    directory, loaded = saved
    for comp in ("unet", "vae", "text_encoder"):
        assert list((directory / comp).glob("*.safetensors")), comp
    assert (directory / "tokenizer" / "vocab.json").is_file() and (directory / "tokenizer" / "merges.txt").is_file()
    assert loaded.fingerprint == tiny.fingerprint
    assert loaded.name == str(directory)
    assert not any(p.requires_grad for p in loaded.unet.parameters()) and not loaded.unet.training
    prompt = ["A high quality photo; europe city; road, all types of roads"]
    ids = tiny.tokenizer(prompt, padding="max_length", max_length=77, return_tensors="pt").input_ids
    ids2 = loaded.tokenizer(prompt, padding="max_length", max_length=77, return_tensors="pt").input_ids
    assert torch.equal(ids, ids2)
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(2, 4, 16, 16, generator=gen)
    with torch.no_grad():
        emb, emb2 = tiny.text_encoder(ids)[0], loaded.text_encoder(ids2)[0]
        assert torch.equal(emb, emb2)
        e = emb.expand(2, -1, -1)
        assert torch.equal(tiny.unet(x, 500, e).sample, loaded.unet(x, 500, e).sample)
        img = torch.rand(1, 3, 64, 64, generator=gen)
        assert torch.equal(tiny.vae.encode(img).latent_dist.mean, loaded.vae.encode(img).latent_dist.mean)


def test_dtype_is_the_callers_choice_and_not_in_the_fingerprint(saved):
    directory, loaded = saved
    half = load_models(str(directory), dtype=torch.bfloat16)
    assert half.unet.dtype == half.text_encoder.dtype == half.vae.dtype == torch.bfloat16
    assert half.dtype == torch.bfloat16 and half.device == torch.device("cpu")
    assert half.fingerprint == loaded.fingerprint
