"""The half-precision extraction path (CUDA's float16, and bfloat16) runs on CPU on `tiny`:
a GPU user's first run must not meet a dtype error the tests never saw.

The same plan runs in float32, float16 and bfloat16 compute, both branches, `res`, `blk`
and `xattn` layers (attention maps, the class-token prompt), through the whole job (views,
VAE encode, inversion, taps, writer). What "close" means: the trajectory is stochastic
(eta noise), so the scale of a meaningful difference is what another noise seed changes in
float32. Half-precision features must be finite, differ from float32 (computed in that
dtype), stay well below that noise floor (at most half of it, per array), and float16
(11-bit mantissa) must be closer to float32 than bfloat16 (8-bit) overall.
"""

import dataclasses
import json

import numpy as np
import pytest
import torch
from helpers import FAST_TRAIN, SMALL
from safetensors.torch import load_file

from diffseg.cache import CacheReader
from diffseg.cache.synthetic import make_cache
from diffseg.stages.extract import job
from diffseg.stages.extract.config import ExtractConfig
from diffseg.stages.extract.plan import build_plan
from diffseg.stages.train import job as train
from diffseg.stages.train import trainer


def _extract(out, dtype: str, seed: int = 0) -> dict[str, np.ndarray]:
    plan = build_plan(
        ExtractConfig(
            dataset="demo",
            model="tiny",
            resolution=(64, 64),
            limit=2,
            kinds=("res", "blk", "xattn"),
            uncond_prompt="classes",
            device="cpu",
            seed=seed,
            out=str(out),
        )
    )
    summary = job.run(dataclasses.replace(plan, compute_dtype=dtype), progress=False)
    assert summary["written"] == 2
    r = CacheReader(out)
    assert r.record.extract.compute_dtype == dtype
    names = [*r.feature_names(), "labels"]
    return {n: np.stack([r.read(i, names)[n] for i in range(r.n)]) for n in names}


def _rel(a: np.ndarray, b: np.ndarray) -> float:
    a32, b32 = a.astype(np.float32), b.astype(np.float32)
    return float(np.linalg.norm(a32 - b32) / np.linalg.norm(b32))


@pytest.fixture(scope="module")
def float32(tmp_path_factory):
    root = tmp_path_factory.mktemp("fp32")
    return _extract(root / "seed0", "float32"), _extract(root / "seed1", "float32", seed=1)


@pytest.fixture(scope="module")
def errors(float32, tmp_path_factory):
    ref, other_seed = float32
    out = {}
    for dtype in ("float16", "bfloat16"):
        half = _extract(tmp_path_factory.mktemp(dtype) / "cache", dtype)
        assert half.keys() == ref.keys()
        assert np.array_equal(half.pop("labels"), ref["labels"])
        for name, got in half.items():
            assert np.isfinite(got).all(), f"{dtype}: non-finite values in {name}"
            floor = _rel(other_seed[name], ref[name])
            err = _rel(got, ref[name])
            assert 0 < err <= 0.5 * floor, f"{dtype} {name}: relative error {err:.3g}, noise floor {floor:.3g}"
            out[dtype, name] = err
    return out


def test_float16_and_bfloat16_extraction_run_on_cpu(errors):
    names = {name for _, name in errors}
    assert len(names) == 18  # 2 branches x 3 kinds x 3 layers
    fp16 = np.mean([errors["float16", n] for n in names])
    bf16 = np.mean([errors["bfloat16", n] for n in names])
    assert fp16 < bf16, f"float16 error {fp16:.3g} not below bfloat16's {bf16:.3g}"


def test_trainer_bfloat16_autocast_runs_on_cpu(tmp_path, monkeypatch):
    """The trainer's mixed-precision path (autocast; bf16 is what a recent GPU gets) on CPU:
    `autocast_dtype` picks it only on CUDA, so the test forces it."""
    cache = make_cache(tmp_path / "gtav", n=4, **SMALL)
    plain = train.main(cache=cache, out=tmp_path / "fp32", **FAST_TRAIN)
    seen = []
    real_autocast = trainer.autocast

    def spy(device, dtype):
        seen.append(dtype)
        return real_autocast(device, dtype)

    monkeypatch.setattr(trainer, "autocast_dtype", lambda device: torch.bfloat16)
    monkeypatch.setattr(trainer, "autocast", spy)
    half = train.main(cache=cache, out=tmp_path / "bf16", **FAST_TRAIN)
    assert seen and set(seen) == {torch.bfloat16}
    lines = [json.loads(line) for line in (half / "metrics.jsonl").read_text().splitlines()]
    assert all(np.isfinite(rec["total"]) for rec in lines if "total" in rec)
    a, b = load_file(plain / "weights.safetensors"), load_file(half / "weights.safetensors")
    assert all(torch.isfinite(v).all() for v in b.values())
    assert any(not torch.equal(a[k], b[k]) for k in a), "bf16 autocast trained the same bits as float32"
