"""Can cross-attention learn to find its classes when nothing else in the U-Net may change?

Backs the cross-attention investigation: how far the `xattn` maps move towards their classes when
only the cross-attention layers and the text encoder may learn. Outputs: experiments/results.md.

Fine-tunes only a model's cross-attention layers (every attn2: to_q, to_k, to_v, to_out) and its
text encoder on colour-word captions (PretrainConfig.color_words) of the pre-training images, with
the rest of the U-Net frozen, then scores the `xattn` inside/outside ratio and its chance level
(`diffseg.stages.runs.attention`) on `dev` images, before and after. The idea it tests: a frozen
U-Net cannot learn to decode a caption read as one global vector, so colours that only the caption
gives would have to be looked up by place. Optional: start the token embeddings wide
(`--token-init-std`, as PretrainConfig.token_init_std) and the keys sharper (`--key-scale`,
multiplying every attn2 to_k weight, so attention starts far from uniform), caption every class
(`--all-classes`, as PretrainConfig.all_classes), or fine-tune the whole U-Net (`--all-layers`).

Images: the pre-training stream (seed 0, the first `--images`), rendered into `--work` once.
Steps are seeded by (0, 4, step), so a rerun takes the same steps. The model directories after
training land in `--work/model-<step>`, the dev caches in `--work/cache-<step>`.

    python -m experiments.probe_xattn_finetune --work /tmp/probe --token-init-std 1 --key-scale 4
"""

from __future__ import annotations

import argparse
import dataclasses
import shutil
import time
from pathlib import Path

PHASE = 4  # the random streams of pre-training use phases 1-3


def main(argv: list[str] | None = None) -> dict:
    """-> {"checks": [{"step", "loss", "ratio", "chance"}, ...], "trainable": parameter count}."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="mini", help="a built-in name or a diffusers directory")
    ap.add_argument("--work", required=True, help="working directory (images, latents, models, caches)")
    ap.add_argument("--steps", type=int, default=400)
    ap.add_argument("--check-every", type=int, default=200, help="steps between dev checks (and one at step 0)")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--images", type=int, default=4000, help="pre-training images to draw batches from")
    ap.add_argument("--color-words", type=float, default=0.8)
    ap.add_argument("--all-classes", type=float, default=0.0, help="as PretrainConfig.all_classes")
    ap.add_argument("--all-layers", action="store_true", help="fine-tune the whole U-Net (the control)")
    ap.add_argument("--token-init-std", type=float, default=None, help="re-initialise token embeddings (None: keep)")
    ap.add_argument("--key-scale", type=float, default=1.0, help="multiply every attn2 to_k weight first")
    ap.add_argument("--lr", type=float, default=1e-3, help="U-Net learning rate")
    ap.add_argument("--text-lr", type=float, default=5e-4)
    ap.add_argument("--dev-images", type=int, default=16)
    ap.add_argument("--size", default="full", help="the demo config whose extraction the dev check uses")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args(argv)

    from diffseg.core import threads

    threads.apply(args.threads)
    import numpy as np
    import torch
    from diffusers.optimization import get_cosine_schedule_with_warmup

    from diffseg.pipeline.models import load_models
    from diffseg.pretrain import checkpoint as ck
    from diffseg.pretrain.config import PretrainConfig
    from diffseg.pretrain.data import load_or_render
    from diffseg.pretrain.run import export
    from diffseg.pretrain.unet import Tokens, batch_captions, noise_scheduler, v_loss
    from diffseg.pretrain.vae import encode_all
    from diffseg.stages.demo.config import demo_config
    from diffseg.stages.demo.job import extract_options
    from diffseg.stages.extract import job as extract
    from diffseg.stages.pretrain import DemoWorld
    from diffseg.stages.runs.attention import xattn_ratio

    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    models = load_models(args.model)
    unet, text, vae, tokenizer = models.unet, models.text_encoder, models.vae, models.tokenizer
    cfg = PretrainConfig(images=args.images, color_words=args.color_words, all_classes=args.all_classes)
    data = load_or_render(work / "images.npz", DemoWorld(), cfg)
    with torch.no_grad():
        latents = encode_all(vae, data.images) * vae.config["scaling_factor"]
    if args.token_init_std is not None:
        tokens_emb = text.get_input_embeddings()
        assert isinstance(tokens_emb, torch.nn.Embedding), type(tokens_emb)
        torch.manual_seed(0)
        torch.nn.init.normal_(tokens_emb.weight, 0.0, args.token_init_std)
    attn2 = [m for name, m in unet.named_modules() if name.endswith(".attn2")]
    with torch.no_grad():
        for m in attn2:
            m.to_k.weight.mul_(args.key_scale)
    cross = list(unet.parameters()) if args.all_layers else [p for m in attn2 for p in m.parameters()]
    for p in (*cross, *text.parameters()):
        p.requires_grad_(True)
    groups = [dict(params=cross, lr=args.lr), dict(params=list(text.parameters()), lr=args.text_lr)]
    opt = torch.optim.AdamW(groups, weight_decay=0.01)
    sched = get_cosine_schedule_with_warmup(opt, min(50, args.steps // 4), max(args.steps, 1))
    params = [p for g in groups for p in g["params"]]
    scheduler, tokens = noise_scheduler(), Tokens(tokenizer)
    checks: list[dict] = []

    def check(step: int, loss: float | None) -> None:
        unet.eval(), text.eval()
        model_dir, cache = work / f"model-{step}", work / f"cache-{step}"
        for d in (model_dir, cache):
            shutil.rmtree(d, ignore_errors=True)
        export(model_dir, unet, vae, text, tokenizer)
        opts = extract_options(demo_config(args.size), str(model_dir), "cpu")
        extract.main(dataclasses.replace(opts, split="dev", limit=args.dev_images, out=str(cache)))
        r = xattn_ratio(cache)
        checks.append(dict(step=step, loss=loss, ratio=r["ratio"], chance=r["chance"]))
        print(f"step {step}: xattn {r['ratio']:.3f} (chance {r['chance']:.3f}) on {r['images']} dev images", flush=True)
        unet.train(), text.train()

    check(0, None)
    t0, avg = time.perf_counter(), None
    for step in range(args.steps):
        rng = np.random.default_rng((cfg.seed, PHASE, step))
        idx = rng.integers(len(latents), size=args.batch)
        ids = tokens(batch_captions(rng, data, idx, cfg))
        loss = v_loss(unet, text, scheduler, latents[idx], ids, ck.step_generator(cfg.seed, PHASE, step))
        ck.optimizer_step(loss, opt, sched, params)
        avg = loss.item() if avg is None else 0.95 * avg + 0.05 * loss.item()
        done = step + 1
        if done % 20 == 0 or done == args.steps:
            print(f"step {done}/{args.steps} loss avg {avg:.4f} {(time.perf_counter() - t0) / done:.2f} s/step")
        if done % args.check_every == 0 or done == args.steps:
            check(done, avg)
    print("\n| step | loss (running avg) | xattn in/out | chance level |\n|---:|---:|---:|---:|")
    for c in checks:
        loss_text = "-" if c["loss"] is None else f"{c['loss']:.4f}"
        print(f"| {c['step']} | {loss_text} | {c['ratio']:.3f} | {c['chance']:.3f} |")
    return {"checks": checks, "trainable": sum(p.numel() for p in cross)}  # U-Net parameters trained


if __name__ == "__main__":
    main()
