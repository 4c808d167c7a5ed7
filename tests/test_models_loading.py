"""Model spec resolution: directories (safetensors only), hub ids from the local cache only."""

import json
import shutil

import pytest
import torch
from safetensors.torch import load_file

from diffseg.core.errors import DiffsegError
from diffseg.pipeline.models import load_models


@pytest.fixture(scope="module")
def saved_dir(tmp_path_factory):
    return load_models("tiny").save_pretrained(tmp_path_factory.mktemp("tiny") / "model")


@pytest.fixture(autouse=True)
def _fingerprint_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("DIFFSEG_CACHE_DIR", str(tmp_path / "fpcache"))


def _copy(saved_dir, tmp_path):
    return shutil.copytree(saved_dir, tmp_path / "model")


def test_bin_only_weights_are_refused(saved_dir, tmp_path):
    model = _copy(saved_dir, tmp_path)
    weights = model / "unet" / "diffusion_pytorch_model.safetensors"
    torch.save(load_file(weights), model / "unet" / "diffusion_pytorch_model.bin")
    weights.unlink()
    with pytest.raises(DiffsegError, match=r"unet: no \.safetensors weights \(found diffusion_pytorch_model\.bin"):
        load_models(str(model))


def test_missing_component_is_named(saved_dir, tmp_path):
    model = _copy(saved_dir, tmp_path)
    shutil.rmtree(model / "vae")
    with pytest.raises(DiffsegError) as err:
        load_models(str(model))
    assert str(model) in str(err.value) and "missing vae/" in str(err.value)


def test_missing_config_is_named(saved_dir, tmp_path):
    model = _copy(saved_dir, tmp_path)
    (model / "scheduler" / "scheduler_config.json").unlink()
    with pytest.raises(DiffsegError, match="scheduler: missing scheduler_config.json"):
        load_models(str(model))


def test_fp16_variant_only_is_loaded(saved_dir, tmp_path):
    model = _copy(saved_dir, tmp_path)
    for comp, stem in (("unet", "diffusion_pytorch_model"), ("text_encoder", "model")):
        (model / comp / f"{stem}.safetensors").rename(model / comp / f"{stem}.fp16.safetensors")
    assert load_models(str(model)).unet.conv_in.weight.dtype == torch.float32


def test_hub_id_not_in_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(DiffsegError) as err:
        load_models("stabilityai/stable-diffusion-2-1")
    msg = str(err.value)
    assert "'stabilityai/stable-diffusion-2-1' is not in the local Hugging Face cache" in msg
    assert str(tmp_path / "hf" / "hub") in msg and "--model tiny" in msg and "never downloads" in msg


def test_hub_id_from_cache(saved_dir, tmp_path, monkeypatch):
    """A snapshot laid out as huggingface_hub caches it resolves without any network."""
    hub = tmp_path / "hub"
    repo = hub / "models--someone--tiny-sd"
    commit = "0" * 40
    shutil.copytree(saved_dir, repo / "snapshots" / commit)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    monkeypatch.setenv("HF_HUB_CACHE", str(hub))
    monkeypatch.chdir(tmp_path)
    models = load_models("someone/tiny-sd")
    assert models.fingerprint == load_models(str(saved_dir)).fingerprint


def test_missing_directory_and_file_path(tmp_path):
    with pytest.raises(DiffsegError, match="does not exist.*--model tiny"):
        load_models(str(tmp_path / "nowhere" / "sd21"))
    (tmp_path / "weights.ckpt").write_bytes(b"x")
    with pytest.raises(DiffsegError, match="is a file"):
        load_models(str(tmp_path / "weights.ckpt"))


def test_scheduler_config_comes_from_the_directory(saved_dir, tmp_path):
    model = _copy(saved_dir, tmp_path)
    path = model / "scheduler" / "scheduler_config.json"
    cfg = json.loads(path.read_text())
    path.write_text(json.dumps({**cfg, "prediction_type": "epsilon"}))
    assert load_models(str(model)).prediction_type == "epsilon"


def test_corrupt_weights_are_one_clear_error(saved_dir, tmp_path):
    model = _copy(saved_dir, tmp_path)
    weights = model / "text_encoder" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    with pytest.raises(DiffsegError, match=r"text_encoder: cannot load"):
        load_models(str(model))


def test_directory_weights_load_without_a_second_copy(saved_dir, monkeypatch):
    """U-Net and VAE ask diffusers for low_cpu_mem_usage (weights placed straight into an empty model,
    with accelerate installed: the [gpu] extra): a dask GPU worker then holds one copy of SD 2.1, not a
    randomly initialised model plus the loaded state dict."""
    from diffusers import AutoencoderKL, UNet2DConditionModel

    asked = {}
    for cls in (UNet2DConditionModel, AutoencoderKL):

        def spy(*args, _load=cls.from_pretrained, _name=cls.__name__, **kwargs):
            asked[_name] = kwargs.get("low_cpu_mem_usage")
            return _load(*args, **kwargs)

        monkeypatch.setattr(cls, "from_pretrained", spy)
    assert load_models(str(saved_dir)).fingerprint == load_models("tiny").fingerprint
    assert asked == {"UNet2DConditionModel": True, "AutoencoderKL": True}
