"""FeatureExtractor on the tiny model: shapes and strides, determinism, seeded noise, the
batched conditional branch, the text-embedding cache, and the online (no_grad) tensor path."""

import dataclasses

import numpy as np
import pytest
import torch

from diffseg.core.errors import DiffsegError
from diffseg.pipeline.config import preset, resolve
from diffseg.pipeline.encode import encode
from diffseg.pipeline.extractor import FeatureExtractor
from diffseg.pipeline.models import load_models


@pytest.fixture(scope="module")
def models():
    return load_models("tiny")


@pytest.fixture(scope="module")
def sample():
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
    lab = np.full((64, 64), 255, np.uint8)
    lab[:32] = 10  # sky
    lab[32:, :32] = 0  # road
    return img, lab


def _count_unet_calls(unet):
    sizes = []
    h = unet.register_forward_pre_hook(lambda _m, args: sizes.append(args[0].shape[0]))
    return sizes, h


def test_layer_specs_tiny_128(models):
    ex = FeatureExtractor(models, resolve("lite", kinds=("res", "blk", "xattn")), uncond_prompt="classes")
    specs = ex.layer_specs((128, 128))
    assert {n: s.stride for n, s in specs.items() if n.endswith("2")} == {
        "up1.res2": 32,
        "up2.res2": 16,
        "up3.res2": 8,
        "up1.blk2": 32,
        "up2.blk2": 16,
        "up3.blk2": 8,
        "up1.xattn2": 32,
        "up2.xattn2": 16,
        "up3.xattn2": 8,
    }
    assert specs["up1.res2"].size == (4, 4) and specs["up3.xattn2"].channels == 19
    assert ex.layer_specs((192, 64))["up3.res2"].size == (8, 24)
    img = np.zeros((128, 128, 3), np.uint8)
    out = ex.uncond(img, "x")
    for name, s in specs.items():
        assert out[name].shape == (3, s.channels, *s.size) and out[name].dtype == np.float16


def test_deterministic_and_seeded_by_content_not_name(models, sample):
    img, _ = sample
    ex = FeatureExtractor(models, preset("lite"))  # save 60, 20, 1
    a, b = ex.uncond(img, "id0"), ex.uncond(img, "id1")  # same pixels, two names
    other = img.copy()
    other[0, 0, 0] ^= 1  # one pixel's lowest bit
    c, v1 = ex.uncond(other, "id0"), ex.uncond(img, "id0", view=1)
    for name in a:
        assert a[name].tobytes() == b[name].tobytes()
        # t = 0 -> 1 -> 20 use eta 0 (outside 10 < t < 250); t = 60 saw the noise at 20 and 40
        assert np.array_equal(a[name][1:], v1[name][1:])
        assert not np.array_equal(a[name][0], c[name][0])  # other pixels: other noise
        assert not np.array_equal(a[name][0], v1[name][0])  # another view index: other noise
    ex2 = FeatureExtractor(models, dataclasses.replace(preset("lite"), seed=1))
    assert not np.array_equal(ex2.uncond(img, "id0")["up3.res2"][0], a["up3.res2"][0])
    lab = sample[1]
    assert ex.cond(img, lab, "p")["up3.res2"].tobytes() == ex.cond(img, lab, "q")["up3.res2"].tobytes()
    # the posterior sample too is keyed by the pixels
    exs = FeatureExtractor(models, dataclasses.replace(preset("1step"), encode="sample"))
    assert exs.uncond(img, "p")["up3.res2"].tobytes() == exs.uncond(img, "q")["up3.res2"].tobytes()
    assert exs.uncond(img, "p")["up3.res2"].tobytes() != exs.uncond(img, "p", view=1)["up3.res2"].tobytes()


def test_content_key_covers_pixels_and_shape():
    from diffseg.pipeline.seeding import content_key

    img = np.arange(2 * 3 * 3, dtype=np.uint8).reshape(2, 3, 3)
    assert content_key(img) == content_key(img.copy())
    assert content_key(img) != content_key(img.reshape(3, 2, 3))  # same bytes, other shape
    assert content_key(img[:, ::-1]) == content_key(np.ascontiguousarray(img[:, ::-1]))


def test_cond_batches_uncond_plus_present_classes(models, sample):
    img, lab = sample
    ex = FeatureExtractor(models, resolve("lite", kinds=("res", "xattn")), classes=(0, 1, 10), uncond_prompt="classes")
    sizes, h = _count_unet_calls(models.unet)
    out = ex.cond(img, lab, "s")
    h.remove()
    assert sizes == [3] * 5  # 5 evaluated steps, [uncond, road, sky] each
    x = out["up3.xattn2"].astype(np.float32)  # [S, 3 classes, h, w]
    assert x.shape == (3, 3, 8, 8)
    assert np.all(x[:, 1] == 0) and np.all(x[:, [0, 2]] > 0)  # sidewalk absent from the label
    assert not np.array_equal(out["up3.res2"], ex.uncond(img, "s")["up3.res2"])
    sizes, h = _count_unet_calls(models.unet)
    ex.uncond(img, "s")
    h.remove()
    assert sizes == [1] * 5


def test_cond_reduces_to_uncond_without_guidance_or_noise(models, sample):
    # guidance 0 and eta 0: every copy takes the same step, the masked average is that step
    img, lab = sample
    cfg = dataclasses.replace(preset("lite"), guidance=0.0, eta=0.0)
    ex = FeatureExtractor(models, cfg)
    u, c = ex.uncond(img, "s"), ex.cond(img, lab, "s")
    guided = FeatureExtractor(models, dataclasses.replace(cfg, guidance=5.0)).cond(img, lab, "s")
    for name in u:
        # a batch of 3 vs 1 changes the U-Net output by ~1e-6; the random tiny U-Net amplifies
        # that to ~3e-3 by t = 20, while guidance 5 moves the features by > 0.1 at every saved t
        np.testing.assert_allclose(c[name].astype(np.float32), u[name].astype(np.float32), atol=1e-2)
        diff = np.abs(guided[name].astype(np.float32) - u[name].astype(np.float32)).max(axis=(1, 2, 3))
        assert np.all(diff > 0.05), diff
    # with an all-ignore label the cond branch is the uncond walk with the cond branch's noise
    empty = np.full_like(lab, 255)
    sizes, h = _count_unet_calls(models.unet)
    ex.cond(img, empty, "s")
    h.remove()
    assert sizes == [1] * 5


def test_text_embeddings_once_per_prompt(models, sample):
    img, lab = sample
    ex = FeatureExtractor(models, preset("1step"), classes=(0, 10, 13))
    calls = []
    h = models.text_encoder.register_forward_hook(lambda *_: calls.append(1))
    for sid in ("a", "b", "c"):
        ex.cond(img, lab, sid)
        ex.uncond(img, sid)
    h.remove()
    assert len(calls) == ex.text.encoder_calls == 3  # "", road prompt, sky prompt


def test_uncond_batch_matches_single(models, sample):
    img, _ = sample
    ex = FeatureExtractor(models, preset("lite"))
    imgs = np.stack([img, img[::-1].copy()])
    sizes, h = _count_unet_calls(models.unet)
    batch = ex.uncond_batch(imgs, ["p", "q"])
    h.remove()
    assert sizes == [2] * 5
    for b, sid in enumerate(["p", "q"]):
        single = ex.uncond(imgs[b], sid)
        for name in single:
            # batch-vs-single rounding (~1e-6) grows to ~2e-3 through the random tiny U-Net by t = 60
            np.testing.assert_allclose(batch[name][b].astype(np.float32), single[name].astype(np.float32), atol=4e-3)


def test_joint_walks_both_branches_in_one_call_per_step_as_they_walk_apart(sample):
    """joint: per step one U-Net call over B uncond rows and every image's 1 + n cond rows; each
    branch's features are those of its own walk (uncond_batch, cond). In float64 they are equal after
    the float16 rounding (in float32 the larger call's rounding grows to ~5e-2 through the random tiny
    U-Net over five steps: that is why the option is recorded)."""
    img, lab = sample
    models = load_models("tiny", dtype=torch.float64)
    ex = FeatureExtractor(models, preset("lite"), uncond_prompt="classes")
    imgs = np.stack([img, img[::-1].copy()])
    labs = np.stack([lab, lab[::-1].copy()])  # two present classes each: 1 + 2 cond rows per image
    sizes, h = _count_unet_calls(models.unet)
    got = ex.joint(imgs, labs, ["p", "q"])
    h.remove()
    assert sizes == [2 + 3 + 3] * 5
    want = {"uncond": ex.uncond_batch(imgs, ["p", "q"])}
    want["cond"] = {k: np.stack([ex.cond(imgs[b], labs[b], s)[k] for b, s in enumerate("pq")]) for k in want["uncond"]}
    for branch in ("uncond", "cond"):
        for name, w in want[branch].items():
            assert got[branch][name].shape == w.shape and got[branch][name].dtype == np.float16
            assert np.array_equal(got[branch][name], w), (branch, name)
    assert not np.array_equal(got["uncond"]["up3.res2"], got["cond"]["up3.res2"])  # the walks differ


def test_online_tensor_path_is_not_inference(models, sample):
    img, lab = sample
    ex = FeatureExtractor(models, preset("1step"))
    ref = ex.uncond(img, "s")  # fills the text cache under inference_mode first
    out = ex.extract_tensors("uncond", img[None], ["s"], grad_mode="no_grad")
    t = out["up2.blk0"]
    assert isinstance(t, torch.Tensor) and t.shape == (1, 1, 64, 4, 4)
    assert not t.is_inference() and not t.requires_grad
    w = torch.ones(64, requires_grad=True)
    (t[0, 0] * w[:, None, None]).sum().backward()  # usable as input of a trained module
    assert w.grad is not None
    np.testing.assert_array_equal(ref["up2.blk0"], t[0].numpy().astype(np.float16))
    cond = ex.extract_tensors("cond", np.stack([img, img]), ["s", "t"], labels=np.stack([lab, lab]))
    assert cond["up3.res1"].shape == (2, 1, 32, 8, 8) and not cond["up3.res1"].is_inference()


def test_user_errors(models):
    with pytest.raises(DiffsegError, match="uncond-prompt classes"):
        FeatureExtractor(models, resolve("lite", kinds=("xattn",)))
    with pytest.raises(DiffsegError, match="1000"):
        FeatureExtractor(models, dataclasses.replace(preset("1step"), steps=(0, 1000), save_steps=(1000,)))
    with pytest.raises(DiffsegError, match="19"):
        FeatureExtractor(models, preset("1step"), classes=(0, 19))
    ex = FeatureExtractor(models, preset("1step"))
    with pytest.raises(DiffsegError, match="100: width and height must be multiples of 64"):
        ex.uncond(np.zeros((100, 128, 3), np.uint8), "s")


def test_encode_mean_and_seeded_sample(models, sample):
    img, _ = sample
    vae = models.vae
    with torch.no_grad():
        z = encode(vae, img[None])
        px = torch.from_numpy(img).permute(2, 0, 1)[None].float() / 127.5 - 1
        ref = vae.encode(px).latent_dist.mean * 0.18215
        assert torch.allclose(z, ref, atol=1e-6) and z.shape == (1, 4, 8, 8)

        def g(s):
            return [torch.Generator().manual_seed(s)]

        s1, s2, s3 = (encode(vae, img[None], "sample", g(s)) for s in (1, 1, 2))
    assert torch.equal(s1, s2) and not torch.equal(s1, s3) and not torch.equal(s1, z)


def test_blk_sum_is_the_references_sum_over_n_plus_2_copies(models, sample):
    img, lab = sample
    cfg = dataclasses.replace(preset("1step"), layers=("up3.blk0",), blk_sum=True)
    ex = FeatureExtractor(models, cfg)
    seen = []
    blk = models.unet.up_blocks[3].attentions[0].transformer_blocks[0]
    h = blk.register_forward_hook(lambda _m, _i, o: seen.append(o.detach().clone()))
    out = ex.cond(img, lab, "s")["up3.blk0"]  # [1, C, 8, 8]
    unc = ex.uncond(img, "s")["up3.blk0"]
    h.remove()
    tok_KNC = seen[0]
    assert tok_KNC.shape[0] == 3  # [uncond, road, sky]
    expected = (2 * tok_KNC[0] + tok_KNC[1:].sum(0)).T.reshape(1, -1, 8, 8).numpy().astype(np.float16)
    np.testing.assert_array_equal(out, expected)
    np.testing.assert_array_equal(unc, (2 * seen[1][0]).T.reshape(1, -1, 8, 8).numpy().astype(np.float16))


def test_blk_sum_hand_case():
    from diffseg.pipeline.extractor import _Rows

    f_K = torch.tensor([[1.0], [10.0], [100.0]])  # rows [uncond, class a, class b], one value each
    cond = _Rows(n_images=1, emb_KTD=torch.zeros(3), noise_parts=(), xattn_sel=[], blk_sum=True)
    assert cond.feature("blk", f_K).tolist() == [[112.0]]  # 2 * 1 + 10 + 100
    assert cond.feature("res", f_K).tolist() == [[1.0]]
    unc = _Rows(n_images=2, emb_KTD=torch.zeros(2), noise_parts=(), xattn_sel=[], blk_sum=True)
    assert unc.feature("blk", torch.tensor([[3.0], [4.0]])).tolist() == [[6.0], [8.0]]  # 2 b_u each


@pytest.mark.parametrize("blk_sum", [False, True])
def test_float16_accumulation_gives_the_float32_paths_bytes(models, sample, blk_sum):
    """The numpy API keeps each saved step in float16 as the walk goes (half the bytes, no second stack);
    its arrays equal the float32 result rounded at the end, as extraction stored them before."""
    img, lab = sample
    cfg = dataclasses.replace(resolve("lite", kinds=("res", "blk", "xattn")), blk_sum=blk_sum)
    ex = FeatureExtractor(models, cfg, uncond_prompt="classes")
    for branch, got in (("uncond", ex.uncond(img, "s")), ("cond", ex.cond(img, lab, "s"))):
        labels = lab[None] if branch == "cond" else None
        half = ex.extract_tensors(branch, img[None], ["s"], labels=labels, grad_mode="inference", dtype=torch.float16)
        full = ex.extract_tensors(branch, img[None], ["s"], labels=labels, grad_mode="inference")
        assert len(got) == len(cfg.layers) and all(v.dtype == torch.float16 for v in half.values())
        for name, a in got.items():
            assert a.dtype == np.float16 and a.tobytes() == full[name][0].numpy().astype(np.float16).tobytes(), name
