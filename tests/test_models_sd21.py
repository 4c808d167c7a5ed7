"""sd21-random has the true SD 2.1 U-Net shapes (slow: an 865M-parameter U-Net on CPU)."""

import pytest
import torch

from diffseg.pipeline.models import load_models

pytestmark = pytest.mark.slow


def test_sd21_random_shapes(tmp_path, monkeypatch):
    monkeypatch.setenv("DIFFSEG_CACHE_DIR", str(tmp_path))
    m = load_models("sd21-random")
    unet = m.unet
    assert unet.config.block_out_channels == (320, 640, 1280, 1280)
    assert sum(p.numel() for p in unet.parameters()) > 860e6
    assert [len(b.resnets) for b in unet.up_blocks] == [3, 3, 3, 3]
    assert [len(getattr(b, "attentions", [])) for b in unet.up_blocks] == [0, 3, 3, 3]
    sizes = {}
    hooks = [
        unet.up_blocks[i]
        .resnets[j]
        .conv2.register_forward_hook(lambda mod, a, out, key=(i, j): sizes.__setitem__(key, tuple(out.shape[1:])))
        for i in range(4)
        for j in range(3)
    ]
    ids = m.tokenizer(["a road"], padding="max_length", max_length=77, return_tensors="pt").input_ids
    with torch.no_grad():
        emb = m.text_encoder(ids)[0]
        latent = m.vae.encode(torch.zeros(1, 3, 256, 256)).latent_dist.mean
        unet(latent, 500, emb)
    for h in hooks:
        h.remove()
    assert emb.shape == (1, 77, 1024)
    assert latent.shape == (1, 4, 32, 32)
    # 256 px image: up0 at 1/64, up1 1/32, up2 1/16, up3 1/8
    expected = {0: (1280, 4, 4), 1: (1280, 8, 8), 2: (640, 16, 16), 3: (320, 32, 32)}
    assert sizes == {(i, j): expected[i] for i in range(4) for j in range(3)}
    assert unet.up_blocks[3].attentions[0].transformer_blocks[0].attn2.heads == 5
    assert len(list((tmp_path / "fingerprints").glob("*.json"))) == 1  # the U-Net digest is remembered


def test_sd21_random_feature_shapes_for_every_selected_layer(tmp_path, monkeypatch):
    """docs/design/method.md §3 at 256 px: up1 1280 ch at 1/32, up2 640 at 1/16, up3 320 at 1/8, for every
    res/blk/xattn layer the reference preset selects, as extracted (not just as hooked)."""
    import numpy as np

    from diffseg.pipeline.config import resolve
    from diffseg.pipeline.extractor import FeatureExtractor

    monkeypatch.setenv("DIFFSEG_CACHE_DIR", str(tmp_path))
    m = load_models("sd21-random")
    cfg = resolve("1step", kinds=("res", "blk", "xattn"))
    assert len(cfg.layers) == 27  # 3 up blocks x 3 positions x 3 kinds
    ex = FeatureExtractor(m, cfg, uncond_prompt="classes")
    specs = ex.layer_specs((256, 256))
    feats = ex.uncond(np.zeros((256, 256, 3), np.uint8), "shape-check")
    expected = {1: (1280, 32), 2: (640, 16), 3: (320, 8)}  # up block -> (channels, stride)
    for name, spec in specs.items():
        i = int(name[2])
        channels, stride = expected[i]
        if spec.kind == "xattn":
            channels = 19
        assert (spec.channels, spec.stride) == (channels, stride), name
        assert feats[name].shape == (1, channels, 256 // stride, 256 // stride), name
        assert feats[name].dtype == np.float16 and np.isfinite(feats[name]).all(), name
