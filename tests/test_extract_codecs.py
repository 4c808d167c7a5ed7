"""`extract --codec` end to end (demo dataset, tiny model, 64x64, 3 samples, one torch thread as in
test_extract_run.py): for every codec a clean extraction, a run killed with SIGKILL and resumed, and
`cache convert` of a raw cache store byte-identical arrays (codes, scales, outliers, bases); a resume
with another codec is refused with one line."""

import numpy as np
import pytest
from test_codecs import assert_same_stored
from test_extract_run import extract, kill_after_first_sample

from diffseg.cache import CacheReader
from diffseg.cache.convert import convert

CODECS = ["bitround:keepbits=6", "int8", "pca:k=8;up1.*=int8"]


@pytest.fixture(scope="module")
def raw(tmp_path_factory):
    out = tmp_path_factory.mktemp("raw") / "cache"
    result = extract(out=out)
    assert result.exit_code == 0, result.output
    return out


@pytest.fixture(scope="module", params=CODECS)
def coded(request, tmp_path_factory):
    out = tmp_path_factory.mktemp("coded") / "cache"
    result = extract("--codec", request.param, out=out)
    assert result.exit_code == 0, result.output
    assert "done: 3 samples written" in result.output
    return request.param, out


def test_coded_extraction_decodes_close_to_raw_and_reruns_to_nothing(raw, coded):
    spec, out = coded
    a, b = CacheReader(raw), CacheReader(out)
    assert b.record.codecs["features"].startswith(spec.split(";")[0].split(":")[0])
    for k in a.feature_names():
        x, y = a.read(1, [k])[k].astype(np.float64), b.read(1, [k])[k].astype(np.float64)
        assert x.shape == y.shape
        if b.codec(k).name != "pca":  # int8: <= 1/255 of the range; bitround: 2^-7 relative
            assert np.abs(y - x).max() <= np.abs(x).max() / 127, k
    result = extract("--codec", spec, out=out)
    assert result.exit_code == 0 and "done: 0 samples written" in result.output


def test_coded_extraction_killed_and_resumed_is_byte_identical(coded, tmp_path):
    spec, clean = coded
    out = tmp_path / "killed"
    kill_after_first_sample(out, "--codec", spec)
    result = extract("--codec", spec, out=out)
    assert result.exit_code == 0, result.output
    assert_same_stored(clean, out)


def test_convert_of_a_raw_cache_equals_direct_extraction(raw, coded, tmp_path):
    spec, clean = coded
    out = tmp_path / "converted"
    convert(raw, spec, out, progress=False)
    assert_same_stored(clean, out)


def test_resume_with_another_codec_is_refused_in_one_line(raw):
    result = extract("--codec", "int8", out=raw)
    assert result.exit_code == 1
    assert "codecs.features=raw+crc32c; this run asks for int8:pct=99.9+crc32c" in result.output
    assert "Traceback" not in result.output


def test_dry_run_prices_every_codec_and_the_plan_uses_its_own(tmp_path):
    out = tmp_path / "dry"
    result = extract("--dry-run", "--codec", "int8", out=out)
    assert result.exit_code == 0, result.output
    # int8 per branch: one byte per value (9984 values), offset and scale 2 x 4 B per (step, channel)
    # (3 x 160), and m = 1 outlier per side (ceil(n / 1000) for n = 4, 16, 64) of 4 + 2 B each
    from diffseg.cache.codecs import parse_codec

    int8 = parse_codec("int8")
    shapes = [(3, 64, 2, 2), (3, 64, 4, 4), (3, 32, 8, 8)]
    per_branch = sum(int8.stored_bytes(s) for s in shapes)
    assert per_branch == 9984 + 3 * 160 * 8 + 6 * sum(s[0] * s[1] * 2 for s in shapes)  # m = 1 at every size
    assert f"bytes per sample: {2 * per_branch + 64 * 64 + 1}" in result.output
    for line in ("raw ", "bitround:keepbits=7", "int8:pct=99.9", "pca:calib=16,k=32,seed=0"):
        assert line in result.output
    assert "39.00 KiB per sample   1.00x" in result.output
    assert not out.exists()


def test_two_dask_workers_fit_the_same_pca_basis(raw, tmp_path):
    spec = "pca:k=8;up1.*=int8"
    out, ref = tmp_path / "dask", tmp_path / "ref"
    result = extract("--dask-workers", "2", "--codec", spec, out=out)
    assert result.exit_code == 0, result.output
    convert(raw, spec, ref, progress=False)
    assert_same_stored(ref, out)


def test_cache_info_and_convert_show_the_codec_and_ratio(raw, tmp_path):
    from typer.testing import CliRunner

    from diffseg.cli import app

    out = tmp_path / "c"
    result = CliRunner().invoke(app, ["cache", "convert", str(raw), "--codec", "pca:k=4", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "3 samples written" in result.output and "ratio" in result.output
    info = CliRunner().invoke(app, ["cache", "info", str(out)])
    assert info.exit_code == 0, info.output
    assert "codec      pca:calib=16,k=4,seed=0+crc32c" in info.output and "ratio" in info.output
    bad = CliRunner().invoke(app, ["cache", "convert", str(raw), "--codec", "zfp", "--out", str(tmp_path / "z")])
    assert bad.exit_code == 1 and "unknown codec 'zfp'" in bad.output and "Traceback" not in bad.output


def test_features_are_encoded_in_the_unet_thread_not_the_writers(tmp_path, monkeypatch):
    """The codec runs where the features were computed (the calling thread, before the copy to the
    host); the writer's thread only writes (overlap.py names its threads)."""
    import threading

    from diffseg.cache import codecs

    threads = []
    encode = codecs.encode_torch

    def recorded(*args, **kw):
        threads.append(threading.current_thread().name)
        return encode(*args, **kw)

    monkeypatch.setattr(codecs, "encode_torch", recorded)
    result = extract("--codec", "int8", out=tmp_path / "cache")
    assert result.exit_code == 0, result.output
    assert threads and set(threads) == {threading.current_thread().name}
