"""experiments/probe_xattn_finetune.py end to end on `tiny` (its numbers are measured by running it)."""

import math

from experiments import probe_xattn_finetune


def test_probe_trains_only_cross_attention_and_scores_dev_before_and_after(tmp_path, capsys):
    import torch

    from diffseg.pipeline.models import load_models

    threads = str(torch.get_num_threads())  # the probe sets torch's threads: keep this process's
    res = probe_xattn_finetune.main(
        ["--model", "tiny", "--work", str(tmp_path), "--steps", "2", "--check-every", "2", "--batch", "2",
         "--images", "6", "--dev-images", "2", "--size", "small", "--key-scale", "4", "--token-init-std", "1",
         "--threads", threads]
    )  # fmt: skip
    assert [c["step"] for c in res["checks"]] == [0, 2]
    assert all(math.isfinite(c["ratio"]) and math.isfinite(c["chance"]) for c in res["checks"])
    assert "| 2 |" in capsys.readouterr().out
    # only the cross-attention moved: every other U-Net weight is tiny's, the attn2 keys are not
    before = load_models("tiny").unet.state_dict()
    after = load_models(str(tmp_path / "model-2")).unet.state_dict()
    moved = {k for k in before if not torch.equal(before[k].half(), after[k].half())}
    assert moved and all(".attn2." in k for k in moved)
    assert any(k.endswith("attn2.to_k.weight") for k in moved)
