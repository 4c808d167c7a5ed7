"""Feature taps on the tiny U-Net: res/blk hooks equal manual hooks, xattn capture equals an
explicit softmax(Q K^T / sqrt(d_head)), processors are swapped only where asked and restored."""

import contextlib
import gc
import weakref

import pytest
import torch

from diffseg.pipeline import prompts
from diffseg.pipeline.attention import configure_attention
from diffseg.pipeline.models import load_models
from diffseg.pipeline.taps import FeatureTaps, XattnCaptureProcessor, class_maps

LAYERS = ("up1.res0", "up3.res2", "up2.blk1", "up3.blk0", "up1.xattn2", "up3.xattn0")


@pytest.fixture(scope="module")
def models():
    m = load_models("tiny")
    configure_attention(m.unet, m.device)
    return m


@pytest.fixture(scope="module")
def inputs(models):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 4, 16, 16, generator=g)
    text = prompts.TextEmbeddings(models.tokenizer, models.text_encoder, "cpu", torch.float32)
    emb = text.batch(["", prompts.class_list_prompt(range(19))])
    return x, emb


def _run(unet, x, emb):
    with torch.no_grad():
        return unet(x, 50, encoder_hidden_states=emb).sample


@contextlib.contextmanager
def output_refs(module):
    """Weak references to the module's outputs during the block: a dead one means nobody kept that output."""
    refs: list[weakref.ref] = []
    handle = module.register_forward_hook(lambda _m, _i, out: refs.append(weakref.ref(out)))
    try:
        yield refs
    finally:
        handle.remove()


def is_held(ref: weakref.ref) -> bool:
    gc.collect()
    return ref() is not None


def test_taps_equal_manual_hooks_and_leave_output_unchanged(models, inputs):
    unet, (x, emb) = models.unet, inputs
    manual, handles = {}, []
    for name, mod in [
        ("up1.res0", unet.up_blocks[1].resnets[0].conv2),
        ("up2.blk1", unet.up_blocks[2].attentions[1].transformer_blocks[0]),
    ]:
        handles.append(mod.register_forward_hook(lambda _m, _i, o, name=name: manual.__setitem__(name, o)))
    ref = _run(unet, x, emb)
    for h in handles:
        h.remove()
    procs_before = [m.processor for m in unet.modules() if hasattr(m, "set_processor")]
    with FeatureTaps(unet, LAYERS) as taps:
        n_capture = sum(
            isinstance(m.processor, XattnCaptureProcessor) for m in unet.modules() if hasattr(m, "set_processor")
        )
        assert n_capture == 2  # only the selected attn2 modules
        out = _run(unet, x, emb)
        feats = taps.read()
    assert [m.processor for m in unet.modules() if hasattr(m, "set_processor")] == procs_before
    # xattn capture runs the plain (non-SDPA) path on two layers: equal up to float rounding
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)
    assert torch.equal(_run(unet, x, emb), ref)  # hooks removed: bit-identical again
    assert torch.allclose(feats["up1.res0"], manual["up1.res0"], atol=1e-5)
    tok = manual["up2.blk1"]  # [B, h*w, C]
    assert feats["up2.blk1"].shape == (2, tok.shape[2], 8, 8)
    assert torch.allclose(feats["up2.blk1"], tok.transpose(1, 2).reshape(2, -1, 8, 8), atol=1e-5)
    assert feats["up3.res2"].shape[-2:] == (16, 16) and feats["up1.res0"].shape[-2:] == (4, 4)


def test_read_releases_the_features(models, inputs):
    """After read() the taps keep no reference to the features: the caller's copy is the last one."""
    unet, (x, emb) = models.unet, inputs
    modules = {
        "up1.res0": unet.up_blocks[1].resnets[0].conv2,
        "up2.blk1": unet.up_blocks[2].attentions[1].transformer_blocks[0],
    }
    with FeatureTaps(unet, tuple(modules)) as taps, contextlib.ExitStack() as stack:
        refs = {name: stack.enter_context(output_refs(m)) for name, m in modules.items()}
        _run(unet, x, emb)
        assert all(is_held(r[-1]) for r in refs.values())  # the taps hold them until read
        feats = taps.read()
        assert set(feats) == set(modules)
        del feats
        assert [name for name, r in refs.items() if is_held(r[-1])] == []


def test_xattn_equals_explicit_softmax(models, inputs):
    unet, (x, emb) = models.unet, inputs
    attn = unet.up_blocks[3].attentions[0].transformer_blocks[0].attn2
    seen = {}
    h = attn.register_forward_pre_hook(
        lambda _m, args, kw: seen.update(hs=args[0] if args else kw["hidden_states"], ctx=kw["encoder_hidden_states"]),
        with_kwargs=True,
    )
    with FeatureTaps(unet, ("up3.xattn0",)) as taps:
        _run(unet, x, emb)
        p_BTHW = taps.read()["up3.xattn0"]
    h.remove()
    B, N, _ = seen["hs"].shape
    q = attn.to_q(seen["hs"]).view(B, N, attn.heads, -1).transpose(1, 2)  # [B, heads, N, d]
    k = attn.to_k(seen["ctx"]).view(B, 77, attn.heads, -1).transpose(1, 2)
    d = q.shape[-1]
    probs = torch.softmax(q @ k.transpose(-1, -2) / d**0.5, dim=-1).mean(1)  # [B, N, T]
    expected = probs.transpose(1, 2).reshape(B, 77, 16, 16)
    assert p_BTHW.shape == (2, 77, 16, 16)
    torch.testing.assert_close(p_BTHW, expected, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(p_BTHW.sum(1), torch.ones(2, 16, 16), atol=1e-5, rtol=0)


def test_class_maps_mean_over_name_tokens():
    p = torch.arange(2 * 5 * 1 * 2, dtype=torch.float32).view(2, 5, 1, 2)
    # copy 1, tokens 2 and 4: [[14, 15]] and [[18, 19]] -> mean [[16, 17]]; None -> zeros
    out = class_maps(p, [(1, (2, 4)), None, (0, (1,))])
    assert torch.equal(out, torch.tensor([[[16.0, 17.0]], [[0.0, 0.0]], [[2.0, 3.0]]]))


def test_token_positions_point_at_class_names(models):
    tok = models.tokenizer
    prompt = prompts.class_list_prompt(range(19))
    assert prompt.startswith("A high quality photo; europe city; road, sidewalk, building, wall")
    pos = prompts.class_token_positions(tok, prompt, range(19))
    ids = tok(prompt, padding="max_length", max_length=77, truncation=True).input_ids
    for c, p in pos.items():
        text = tok.decode([ids[i] for i in p]).strip()
        assert text == prompts.CLASS_NAMES[c], (c, text)
    cp = prompts.class_prompt(6)
    assert cp == "A high quality photo; europe city; traffic light, traffic lights and their housings"
    p6 = prompts.name_positions_in_class_prompt(tok, cp, 6)
    ids6 = tok(cp).input_ids
    assert len(p6) == 2 and tok.decode([ids6[i] for i in p6]).strip() == "traffic light"
    assert p6[0] == 1 + len(tok(prompts.PREFIX, add_special_tokens=False).input_ids)


def test_hooks_removed_on_error(models):
    unet = models.unet
    conv = unet.up_blocks[1].resnets[0].conv2
    attn2 = unet.up_blocks[1].attentions[0].transformer_blocks[0].attn2
    proc = attn2.processor
    x, emb = torch.zeros(1, 4, 16, 16), torch.zeros(1, 77, models.text_encoder.config.hidden_size)
    with pytest.raises(RuntimeError, match="boom"), FeatureTaps(unet, ("up1.res0", "up1.xattn0")):
        assert attn2.processor is not proc
        with output_refs(conv) as refs:
            _run(unet, x, emb)
        assert is_held(refs[-1])  # the res hook is in place: the taps keep conv2's output
        raise RuntimeError("boom")
    assert attn2.processor is proc
    with output_refs(conv) as refs:
        _run(unet, x, emb)
    assert not is_held(refs[-1])  # ... and gone: nothing captures it any more
