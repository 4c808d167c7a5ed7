"""Bad samples in stage one: skipped with a warning naming the file, recorded in the cache
attributes and counted; `--strict` stops at the first with exit 1 (docs/design/architecture.md "Errors")."""

import numpy as np
import pytest
import torch
from datagen import make_gtav
from typer.testing import CliRunner

from diffseg.cache import CacheReader
from diffseg.cli import app

RUNNER = CliRunner()


@pytest.fixture()
def gta(tmp_path):
    root = tmp_path / "gta"
    make_gtav(root, n=3, size=(96, 64))
    (root / "images" / "00002.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    return root


def extract(root, out, *extra):
    return RUNNER.invoke(
        app,
        [
            "extract",
            "--dataset",
            "gtav",
            "--root",
            str(root),
            "--model",
            "tiny",
            "--resolution",
            "64x64",
            "--scale",
            "96x64",
            "--preset",
            "1step",
            "--out",
            str(out),
            *extra,
        ],
    )


def test_corrupt_image_is_skipped_recorded_and_counted(gta, tmp_path):
    out = tmp_path / "cache"
    result = extract(gta, out)
    assert result.exit_code == 0, result.output
    assert "warning: skipped sample 00002:" in result.output and "00002.png" in result.output
    assert "done: 2 samples written, 1 skipped" in result.output
    r = CacheReader(out)
    assert list(r.status) == [1, 2, 1]
    (skip,) = r.record.skipped
    assert skip.id == "00002" and "images/00002.png" in skip.reason
    assert np.isfinite(r.read(2, ["uncond/up3.res2"])["uncond/up3.res2"]).all()
    # a rerun skips both the complete and the skipped samples, and keeps the record
    again = extract(gta, out)
    assert again.exit_code == 0 and "done: 0 samples written, 0 skipped" in again.output
    assert CacheReader(out).record.skipped == r.record.skipped


def test_a_decompression_bomb_is_skipped_like_a_corrupt_image_and_recorded_relative_to_the_root(gta, tmp_path):
    from datagen import save_bomb

    save_bomb(gta / "images" / "00001.png", (20000, 20000))  # a 1 MB file of 1.2 GB pixels, in its header
    out = tmp_path / "cache"
    result = extract(gta, out)
    assert result.exit_code == 0, result.output
    assert "warning: skipped sample 00001: images/00001.png: image too large" in result.output
    assert "done: 1 samples written, 2 skipped" in result.output
    reasons = {s.id: s.reason for s in CacheReader(out).record.skipped}
    assert reasons["00001"].startswith("images/00001.png: image too large")
    assert reasons["00002"].startswith("images/00002.png: unreadable image")
    assert not any(str(gta) in r or str(gta.resolve()) in r for r in reasons.values())  # no absolute path kept


def test_strict_stops_at_the_first_bad_sample(gta, tmp_path):
    out = tmp_path / "cache"
    result = extract(gta, out, "--strict")
    assert result.exit_code == 1
    assert "00002.png" in result.output and "--strict" in result.output and "Traceback" not in result.output
    status = CacheReader(out).status
    assert status[0] == 1 and status[1] == 0  # never marked skipped, never half written


def _nan_in(monkeypatch, sample: str, dtypes: tuple[str, ...]):
    """Features of `sample` get a NaN whenever the runner's plan computes in one of `dtypes`."""
    from diffseg.stages.extract.worker import SampleRunner

    compute = SampleRunner.batch_features

    def injected(self, items):
        out = compute(self, items)
        for it, arrays in zip(items, out):
            if it.sid == sample and self.plan.compute_dtype in dtypes:
                bad = torch.as_tensor(arrays["uncond/up3.res2"]).clone()  # features may be (inference) tensors
                bad[0, 0, 0, 0] = np.nan
                arrays["uncond/up3.res2"] = bad
        return out

    monkeypatch.setattr(SampleRunner, "batch_features", injected)


def _plan(gta, out, **kw):
    from diffseg.stages.extract.config import ExtractConfig
    from diffseg.stages.extract.plan import build_plan

    return build_plan(
        ExtractConfig(
            dataset="gtav", root=str(gta), model="tiny", resolution=(64, 64), scale=(96, 64), preset="1step",
            out=str(out), device="cpu", **kw,
        )
    )  # fmt: skip


def test_a_nonfinite_feature_skips_that_sample_alone(gta, tmp_path, monkeypatch):
    """A NaN that float32 does not cure: the sample is skipped with its reason, the others written;
    `cache info` and `verify` count it as skipped, not pending."""
    from diffseg.stages.extract import job

    (gta / "images" / "00002.png").unlink()  # the fixture's corrupt image is another test's
    (gta / "labels" / "00002.png").unlink()
    out = tmp_path / "cache"
    _nan_in(monkeypatch, "00001", ("float16", "float32"))
    summary = job.run(_plan(gta, out), progress=False)
    assert (summary["written"], summary["skipped"]) == (1, 1)
    r = CacheReader(out)
    status = dict(zip(r.ids, r.status.tolist()))
    assert status.pop("00001") == 2 and list(status.values()) == [1]
    (skip,) = r.record.skipped
    assert skip.id == "00001" and skip.reason == "non-finite features in float32 (uncond/up3.res2: 1 NaN/inf of 2048)"
    info = RUNNER.invoke(app, ["cache", "info", str(out)])
    assert "1 complete, 0 pending, 1 skipped" in info.output and "skipped 00001: non-finite" in info.output
    verify = RUNNER.invoke(app, ["cache", "verify", str(out)])
    assert verify.exit_code == 0 and "1 skipped" in verify.output, verify.output


def test_a_float16_overflow_is_computed_again_in_float32(gta, tmp_path, monkeypatch, capsys):
    """A plan in float16 (a GPU's) whose sample turns non-finite: the sample alone runs again in float32
    and is written with finite features; a resume of a float16 --blk-sum cache summed the old way is refused."""
    import dataclasses

    from diffseg.stages.extract import job

    (gta / "images" / "00002.png").unlink()
    (gta / "labels" / "00002.png").unlink()
    out = tmp_path / "cache"
    _nan_in(monkeypatch, "00001", ("float16",))
    plan = dataclasses.replace(_plan(gta, out, blk_sum=True), compute_dtype="float16")
    summary = job.run(plan, progress=False)
    assert (summary["written"], summary["skipped"]) == (2, 0)
    assert (
        "warning: sample 00001: non-finite features in float16 (uncond/up3.res2: 1 NaN/inf of 2048): computed in float32"
        in capsys.readouterr().err
    )
    r = CacheReader(out)
    i = r.ids.index("00001")
    assert list(r.status) == [1, 1] and np.isfinite(r.read(i, ["uncond/up3.res2"])["uncond/up3.res2"]).all()
    assert r.record.extract.blk_sum_dtype == "float32"
    assert "blk_sum_dtype" in r.record.extract.to_dict()
