"""The Python API: the worked example of docs/guides/python.md runs as written (extract and train a tiny
run, then segment), `Segmenter` gives `diffseg predict`'s numbers, `diffseg.train` takes a TrainConfig,
and `import diffseg` imports no torch nor changes a thread setting until `set_threads` is called."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from safetensors.torch import load_file
from typer.testing import CliRunner

import diffseg
from diffseg.cli import app
from diffseg.core.errors import DiffsegError

REPO = Path(__file__).resolve().parents[1]
GUIDE = REPO / "docs" / "guides" / "python.md"


def _python(code: str, cwd: Path) -> str:
    # one torch thread, as in this process (conftest.py): float sums, and so a rare argmax, depend on the count
    path = os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])
    env = {**os.environ, "PYTHONPATH": path, "DIFFSEG_THREADS": "1"}
    res = subprocess.run([sys.executable, "-c", code], cwd=cwd, env=env, capture_output=True, text=True)
    assert res.returncode == 0, res.stderr[-3000:]
    return res.stdout


@pytest.fixture(scope="module")
def example(tmp_path_factory):
    """The guide's code blocks, run in order in a fresh process in an empty folder holding street.png."""
    root = tmp_path_factory.mktemp("api")
    image = np.random.default_rng(0).integers(0, 255, (50, 70, 3), dtype=np.uint8)
    Image.fromarray(image).save(root / "street.png")
    blocks = re.findall(r"```python\n(.*?)```", GUIDE.read_text(), re.S)
    assert len(blocks) == 2
    keep = "np.save('classes.npy', classes)\nnp.save('mirrored.npy', both[1])\n"
    _python("\n".join(blocks) + keep, root)
    return root, image


def test_the_worked_example_runs(example):
    root, image = example
    classes = np.load(root / "classes.npy")
    assert classes.shape == image.shape[:2] and classes.dtype == np.uint8
    assert (root / "runs" / "demo" / "weights.safetensors").is_file()


def test_segmenter_gives_the_numbers_of_predict(example, tmp_path):
    root, image = example
    Image.fromarray(np.ascontiguousarray(image[:, ::-1])).save(tmp_path / "mirrored.png")
    args = ["predict", "--run", str(root / "runs" / "demo"), "--out", str(tmp_path / "out"), "--device", "cpu"]
    res = CliRunner().invoke(app, [*args, str(root / "street.png"), str(tmp_path / "mirrored.png")])
    assert res.exit_code == 0, res.output
    for name in ("classes", "mirrored"):
        mask = np.asarray(Image.open(tmp_path / "out" / f"{'street' if name == 'classes' else name}.png"))
        assert np.array_equal(np.load(root / f"{name}.npy"), mask), name


def test_segmenter_refuses_what_is_not_an_rgb_uint8_image(example):
    root, _ = example
    segmenter = diffseg.Segmenter.from_run(root / "runs" / "demo", device="cpu")
    with pytest.raises(DiffsegError, match=r"image 0: expected an RGB uint8 array \[H, W, 3\], got float64"):
        segmenter(np.zeros((8, 8, 3)))
    with pytest.raises(DiffsegError, match="2 images but 1 names"):
        segmenter([np.zeros((8, 8, 3), np.uint8)] * 2, names=["one"])


def test_train_takes_a_recorded_train_config(example, tmp_path, monkeypatch):
    root, _ = example
    monkeypatch.chdir(root)  # the example's cache path is relative, and so recorded
    run = root / "runs" / "demo"
    cfg = diffseg.TrainConfig.from_dict(json.loads((run / "config.json").read_text())["config"])
    again = diffseg.train(cfg, out=tmp_path / "again")
    want, got = load_file(run / "weights.safetensors"), load_file(again / "weights.safetensors")
    assert want.keys() == got.keys() and all(want[k].equal(got[k]) for k in want)


def test_import_is_light_and_threads_are_an_explicit_call(tmp_path):
    code = (
        "import os, sys\n"
        "before = dict(os.environ)\n"
        "import diffseg\n"
        "print('torch' in sys.modules, dict(os.environ) == before)\n"
        "import torch\n"  # torch first, diffseg's API after: still works
        "diffseg.set_threads(1)\n"
        "print(torch.get_num_threads(), os.environ['OMP_WAIT_POLICY'], diffseg.Segmenter.__name__)\n"
    )
    first, second = _python(code, tmp_path).splitlines()[-2:]
    assert first == "False True"
    assert second == "1 PASSIVE Segmenter"
