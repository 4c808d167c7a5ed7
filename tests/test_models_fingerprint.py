"""Model fingerprint: follows stored weights and configs, not the run-time dtype."""

import json
import shutil

import pytest
import torch
from safetensors.torch import load_file, save_file

from diffseg.pipeline import fingerprint as fp
from diffseg.pipeline.models import load_models


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DIFFSEG_CACHE_DIR", str(tmp_path_factory.mktemp("fpcache")))
        tiny = load_models("tiny")
        yield tiny.fingerprint, tiny.save_pretrained(tmp_path_factory.mktemp("tiny") / "model")


@pytest.fixture
def model(saved, tmp_path, monkeypatch):
    monkeypatch.setenv("DIFFSEG_CACHE_DIR", str(tmp_path / "fpcache"))
    return saved[0], shutil.copytree(saved[1], tmp_path / "model")


def test_one_weight_changes_it(model):
    base, directory = model
    path = directory / "vae" / "diffusion_pytorch_model.safetensors"
    weights = load_file(path)
    weights["decoder.conv_out.bias"][0] += 1e-3
    save_file(weights, path, metadata={"format": "pt"})
    assert load_models(str(directory)).fingerprint != base


def test_scheduler_config_changes_it(model):
    base, directory = model
    path = directory / "scheduler" / "scheduler_config.json"
    cfg = json.loads(path.read_text())
    path.write_text(json.dumps({**cfg, "beta_end": 0.02}))
    assert load_models(str(directory)).fingerprint != base


def test_volatile_config_keys_do_not(model):
    base, directory = model
    path = directory / "unet" / "config.json"
    cfg = json.loads(path.read_text())
    path.write_text(json.dumps({**cfg, "_diffusers_version": "0.0.1", "_name_or_path": "elsewhere"}))
    assert load_models(str(directory)).fingerprint == base


def test_dtype_does_not_change_it(model):
    base, directory = model
    assert load_models(str(directory), dtype=torch.float16).fingerprint == base


def test_sidecar_is_reused_and_invalidated(model, tmp_path):
    _, directory = model
    path = directory / "unet" / "diffusion_pytorch_model.safetensors"
    first = fp.files_digest([path])
    sidecars = list((tmp_path / "fpcache" / "fingerprints").glob("*.json"))
    assert len(sidecars) == 1
    record = json.loads(sidecars[0].read_text())
    assert record["key"]["size"] == path.stat().st_size
    # A forged entry proves the sidecar is read while size and mtime match ...
    record["value"] = [["x", [1], "0"]]
    sidecars[0].write_text(json.dumps(record))
    assert fp.files_digest([path]) == fp.weights_digest([("x", [1], "0")])
    # ... and ignored once the file changes.
    weights = load_file(path)
    save_file(weights, path, metadata={"format": "pt"})
    assert fp.files_digest([path]) == first
    assert len(list((tmp_path / "fpcache" / "fingerprints").glob("*.json"))) == 1  # replaced, not added


def test_large_builtin_digest_is_memoised(tmp_path, monkeypatch):
    monkeypatch.setenv("DIFFSEG_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(fp, "_MEMO_MIN_PARAMS", 0)
    module = torch.nn.Linear(2, 2)
    first = fp.builtin_digest("x/unet", 0, {"a": 1}, module)
    assert first == fp.state_dict_digest(module)
    with torch.no_grad():
        module.weight += 1  # not a real built-in any more: the memo answers from its key
    assert fp.builtin_digest("x/unet", 0, {"a": 1}, module) == first
    assert fp.builtin_digest("x/unet", 1, {"a": 1}, module) != first


def test_weights_digest_hand_case():
    a = torch.tensor([1.0, 2.0])
    assert fp.tensor_digest(a.half()) == fp.tensor_digest(a)  # stored fp16 and fp32 with equal values hash alike
    entries = [("b", [2], fp.tensor_digest(a.half())), ("a", [2], fp.tensor_digest(a))]
    assert fp.weights_digest(entries) == fp.weights_digest(entries[::-1])
    assert fp.weights_digest(entries) != fp.weights_digest([entries[1], ("b", [2], fp.tensor_digest(a + 1))])


def test_clean_config_drops_volatile_keys():
    cfg = {
        "_diffusers_version": "1",
        "transformers_version": "5",
        "dtype": "float16",
        "a": (1, 2),
        "b": {"_name_or_path": "x", "c": 1},
    }
    assert fp.clean_config(cfg) == {"a": [1, 2], "b": {"c": 1}}
