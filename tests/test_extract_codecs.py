"""`extract --codec` end to end (demo dataset, tiny model, 64x64, 3 samples, one torch thread as in
test_extract_run.py): for every codec a clean extraction, a run killed with SIGKILL and resumed, and
`cache convert` of a raw cache store byte-identical arrays (codes, scales, outliers, bases); a resume
with another codec is refused with one line."""

import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from test_codecs import assert_same_stored
from test_extract_run import BASE, extract

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
    cmd = [sys.executable, "-c", "from diffseg.cli import main; main()", *BASE, "--out", str(out), "--codec", spec]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    first = out / "status" / "c" / "0"  # sample 0's completion marker (written last)
    deadline = time.time() + 180
    while not first.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.002)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    status = CacheReader(out).status
    assert status[0] == 1 and (status == 0).any(), f"kill came too late to interrupt: {status}"
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
