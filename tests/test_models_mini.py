"""The shipped `mini` model: loads by name through the directory code path, with a stable fingerprint."""

import pytest

from diffseg.core.errors import DiffsegError
from diffseg.pipeline import builtin
from diffseg.pipeline.builtin import SHIPPED
from diffseg.pipeline.models import load_models

SHIPPED_YET = (SHIPPED["mini"] / "unet" / "config.json").is_file()


@pytest.fixture(autouse=True)
def _fingerprint_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("DIFFSEG_CACHE_DIR", str(tmp_path / "fpcache"))


@pytest.mark.skipif(not SHIPPED_YET, reason="mini's weights are not shipped in this checkout yet")
def test_mini_by_name_and_from_a_saved_directory_share_a_fingerprint(tmp_path):
    m = load_models("mini")
    assert m.name == "mini" and m.prediction_type == "v_prediction"
    again = load_models(str(m.save_pretrained(tmp_path / "mini")))
    assert again.fingerprint == m.fingerprint
    assert m.fingerprint != load_models("tiny").fingerprint
    # the decoder side, where every feature is tapped, has tiny's (and SD 2.1's) layer names
    tiny = load_models("tiny")
    layers = {n for n, _ in m.unet.named_modules() if n.startswith("up_blocks")}
    assert layers == {n for n, _ in tiny.unet.named_modules() if n.startswith("up_blocks")}
    assert len(m.unet.down_blocks) == 4 and not hasattr(m.unet.up_blocks[0], "attentions")


@pytest.mark.skipif(not SHIPPED_YET, reason="mini's weights are not shipped in this checkout yet")
def test_shipped_weights_are_small_fp16_safetensors():
    files = [f for f in SHIPPED["mini"].rglob("*") if f.is_file()]
    assert sum(f.stat().st_size for f in files) < 25e6
    assert not [f for f in files if f.suffix in (".bin", ".pt", ".ckpt", ".pth")]


def test_missing_weights_give_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setitem(builtin.SHIPPED, "mini", tmp_path / "absent")
    with pytest.raises(DiffsegError, match="weights are not installed.*diffseg pretrain"):
        load_models("mini")
