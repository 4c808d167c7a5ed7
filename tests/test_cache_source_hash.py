"""The source changed after extraction: the cache keeps a sha256 per sample of its decoded image
and label, and `cache verify --data` names the samples whose source no longer matches."""

import json
import os

import numpy as np
from datagen import make_cityscapes
from PIL import Image
from typer.testing import CliRunner

from diffseg.cache import CacheReader
from diffseg.cli import app

RUNNER = CliRunner()


def test_verify_data_names_a_replaced_image(tmp_path):
    make_cityscapes(tmp_path / "cs", split="val", n=2, size=(96, 48))
    out = tmp_path / "cs-val"
    args = ["--dataset", "cityscapes", "--root", str(tmp_path / "cs"), "--split", "val"]
    result = RUNNER.invoke(app, ["extract", *args, "--model", "tiny", "--resolution", "64x64", "--out", str(out)])
    assert result.exit_code == 0, result.output
    r = CacheReader(out)
    assert r.record.sample_hash == "sample_sha256" and np.asarray(r.zarr_array("sample_sha256")[:]).any(axis=1).all()
    # ids stay relative to the dataset root, and no absolute path is in the record (README "Security")
    assert not any(os.path.isabs(i) for i in r.ids) and str(tmp_path) not in (out / "zarr.json").read_text()
    verify = ["cache", "verify", str(out), "--data", "--root", str(tmp_path / "cs"), "--json"]
    result = RUNNER.invoke(app, verify)
    assert result.exit_code == 0 and json.loads(result.output)["problems"] == [], result.output
    # replace the second image under the same id (same size, other pixels)
    image = sorted((tmp_path / "cs" / "leftImg8bit" / "val").rglob("*_leftImg8bit.png"))[1]
    pixels = np.asarray(Image.open(image))
    Image.fromarray(255 - pixels).save(image)
    result = RUNNER.invoke(app, verify)
    assert result.exit_code == 1, result.output
    problems = json.loads(result.output)["problems"]
    assert len(problems) == 1 and r.ids[1] in problems[0] and "stale" in problems[0], problems
    # without --data the features still verify: the check is opt-in (it decodes every source)
    assert RUNNER.invoke(app, ["cache", "verify", str(out)]).exit_code == 0
