"""Training from coded caches: int8 and pca arrays move as their stored parts and expand on the
training device; pca's basis folded into the fusion block's first 1x1 maps trains the same weights
as decoding the features first (float32 tolerance); evaluation reads coded caches too."""

import json

import pytest
import torch
from helpers import FAST_TRAIN, SMALL
from safetensors.torch import load_file

from diffseg.cache import FeatureDataset
from diffseg.cache.convert import convert
from diffseg.cache.synthetic import make_cache
from diffseg.stages.runs.model import build_segmentor
from diffseg.stages.train import job as train

LAYERS = ("up1.res2", "up2.res2", "up3.res2")


@pytest.fixture(scope="module")
def caches(tmp_path_factory):
    d = tmp_path_factory.mktemp("coded")
    small = {**SMALL, "resolution": (64, 64)}  # stride 32 at 2x2: at 1x1 GroupNorm leaves gradients of noise
    raw = make_cache(d / "raw", n=6, **small)
    ev = make_cache(
        d / "ev", n=2, kind="eval", dataset="cityscapes", split="val", branches=("uncond",), seed=1, **small
    )
    out = {"raw": raw}
    for spec in ("int8", "pca:k=3", "pca:k=3;up3.*=int8"):
        convert(raw, spec, d / spec.replace(":", "_").replace(";", "_").replace("*", "x"), progress=False)
        out[spec] = d / spec.replace(":", "_").replace(";", "_").replace("*", "x")
    convert(ev, "pca:k=3", d / "ev_pca", progress=False)
    out["ev_pca"] = d / "ev_pca"
    return out


def test_folded_fusion_equals_the_fusion_on_decoded_features(caches):
    ds = FeatureDataset(caches["pca:k=3"], ("uncond",), LAYERS, encoded=True)
    bases = ds.fold_bases()
    assert sorted(bases) == sorted(LAYERS)  # both branches share one basis per layer
    batch = torch.utils.data.default_collate([ds[i] for i in range(4)])
    coef = ds.decoder("cpu", fold=True)(batch["feats"])["uncond"]
    full = ds.decoder("cpu")(batch["feats"])["uncond"]
    assert coef["up1.res2"].shape[2] == 3 and full["up1.res2"].shape[2] == 4
    specs = ds.reader.layer_specs
    a = build_segmentor({k: specs[k].to_dict() for k in LAYERS}, 3, "light", 0)
    b = build_segmentor({k: specs[k].to_dict() for k in LAYERS}, 3, "light", 0)
    b.fusion.fold({k: (torch.from_numpy(B), torch.from_numpy(m)) for k, (B, m) in bases.items()})
    a.eval(), b.eval()  # the head's dropout off (unseeded here); the trainer test below runs it seeded
    opt_a, opt_b = (torch.optim.SGD(m.parameters(), lr=0.05) for m in (a, b))
    labels = batch["label"][:, ::4, ::4]
    for _ in range(3):  # a few steps: the gradients through W P equal those through W on P c + m
        for model, opt, x in ((a, opt_a, full), (b, opt_b, coef)):
            opt.zero_grad()
            loss = torch.nn.functional.cross_entropy(model(x), labels, ignore_index=255)
            loss.backward()
            opt.step()
    for (name, pa), pb in zip(a.state_dict().items(), b.state_dict().values()):
        torch.testing.assert_close(pa, pb, rtol=1e-4, atol=1e-5, msg=name)
    assert set(a.state_dict()) == set(b.state_dict())  # the bases are not saved with the weights


def test_training_on_a_pca_cache_folded_equals_decoded(caches, tmp_path, monkeypatch):
    folded = train.main(cache=caches["pca:k=3"], out=tmp_path / "fold", eval_caches=[caches["ev_pca"]], **FAST_TRAIN)
    monkeypatch.setattr(FeatureDataset, "fold_bases", lambda self: {})  # expand on the device instead
    decoded = train.main(cache=caches["pca:k=3"], out=tmp_path / "dec", **FAST_TRAIN)
    wa, wb = load_file(folded / "weights.safetensors"), load_file(decoded / "weights.safetensors")
    assert set(wa) == set(wb)
    for k in wa:
        # Adam's first steps are about +-lr (x10 for the head) whatever a gradient's size, so gradients
        # that are zero up to rounding move a weight by a different step: 5 % of a head step allowed
        torch.testing.assert_close(wa[k], wb[k], rtol=0, atol=0.05 * FAST_TRAIN["lr"] * 10, msg=k)
    for a, b in zip(*(metrics(run) for run in (folded, decoded))):
        assert a == pytest.approx(b, rel=1e-5)


def metrics(run) -> list[float]:
    lines = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return [line[k] for line in lines for k in ("total", "ce_cond", "ce_uncond", "cons") if k in line]


@pytest.mark.parametrize("spec", ["int8", "pca:k=3;up3.*=int8"])
def test_training_reads_coded_caches_with_a_step_subset(caches, tmp_path, spec):
    run = train.main(cache=caches[spec], out=tmp_path / "run", save_steps=(60, 1), **FAST_TRAIN)
    assert (run / "weights.safetensors").is_file()
