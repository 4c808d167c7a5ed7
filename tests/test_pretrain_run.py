"""The `mini` pre-training end to end on a few steps: a loadable model, resumable, reproducible."""

import json

import pytest
import torch
from typer.testing import CliRunner

from diffseg.cli import app
from diffseg.core.errors import DiffsegError
from diffseg.pipeline.models import load_models
from diffseg.pretrain import checkpoint as ck
from diffseg.pretrain.config import quick_config
from diffseg.stages.pretrain import main as pretrain


@pytest.fixture(autouse=True)
def _fingerprint_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("DIFFSEG_CACHE_DIR", str(tmp_path / "fpcache"))


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """One uninterrupted quick pre-training."""
    out = tmp_path_factory.mktemp("pretrain") / "ref"
    return pretrain(quick_config(), out, echo=False)


def test_quick_pretraining_gives_a_model_with_tiny_s_structure(reference):
    m = load_models(str(reference))
    tiny = load_models("tiny")
    names = {n for n, _ in m.unet.named_modules() if n.startswith("up_blocks")}
    assert names == {n for n, _ in tiny.unet.named_modules() if n.startswith("up_blocks")}
    assert m.prediction_type == "v_prediction" and m.scheduler.config["timestep_spacing"] == "leading"
    assert m.vae.config["scaling_factor"] != 0.18215  # measured from the encoded images
    assert m.text_encoder.config.hidden_size == m.unet.config["cross_attention_dim"]
    assert all(p.dtype == torch.float32 for p in m.unet.parameters())  # stored fp16, run in fp32
    record = json.loads((reference.parent / "config.json").read_text())
    assert record["unet_steps"] == 3 and "unet step 3/3" in (reference.parent / "log.txt").read_text()


def test_killed_run_resumes_to_the_same_weights(reference, tmp_path, monkeypatch):
    real_save = ck.save
    kills = {"vae.ckpt": 2, "unet.ckpt": 2, "decoder.ckpt": 2}  # die right after the checkpoint of step 2, per phase

    def save_then_die(path, state):
        real_save(path, state)
        if path.name in kills and kills[path.name] == state["step"]:
            del kills[path.name]
            raise KeyboardInterrupt

    monkeypatch.setattr(ck, "save", save_then_die)
    out = tmp_path / "run"
    for _ in range(3):
        with pytest.raises(KeyboardInterrupt):
            pretrain(quick_config(), out, echo=False)
    model = pretrain(quick_config(), out, echo=False)
    assert "resumed at step 2" in (out / "log.txt").read_text()
    for part in ("unet", "vae", "text_encoder"):
        (name,) = {p.name for p in (reference / part).glob("*.safetensors")}
        assert (model / part / name).read_bytes() == (reference / part / name).read_bytes(), part


def test_a_working_folder_refuses_another_recipe(tmp_path):
    pretrain(quick_config(vae_steps=1, unet_steps=1), tmp_path, echo=False)
    with pytest.raises(DiffsegError, match="differs in unet_steps"):
        pretrain(quick_config(vae_steps=1, unet_steps=2), tmp_path, echo=False)


def test_cli_pretrain_quick(tmp_path):
    result = CliRunner().invoke(app, ["pretrain", "--out", str(tmp_path / "p"), "--quick"])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "p" / "model" / "unet" / "diffusion_pytorch_model.safetensors").is_file()
    bad = CliRunner().invoke(app, ["pretrain", "--out", str(tmp_path / "p"), "--quick", "--seed", "1"])
    assert bad.exit_code == 1 and "differs in seed" in bad.output
