"""Does a model's U-Net use its caption? The v-prediction loss with the true caption, an empty one
and another image's, on held-out pre-training-style images.

Backs the cross-attention investigation: why `mini`'s `xattn` maps stay flat (its U-Net barely
reads the caption). Outputs: experiments/results.md.

Why: a class's cross-attention can only learn where the class is if the caption tells the U-Net
something it needs. On the demo world, where nearly every scene shows the same dozen classes,
`mini`'s captions barely change its loss, and its `xattn` maps stay flat.

Images: the demo world's unlabelled renderer (diffseg.data.demo.pretrain), indices from
`--first` on (default 4000: past the 4,000 that pre-training uses, so the model never saw them;
disjoint from every demo split by construction), half of them close-ups when `--zoom` > 1, with
kinds of things left out when `--variety` > 0 (then the caption says which classes show).
A fourth column keeps the true caption but spreads every cross-attention evenly over the image
(each token's attention probability replaced by its mean over the pixels, per image and head): if
the loss barely moves, the U-Net reads its caption without looking up a class's token at that
class's pixels, and its `xattn` maps have no reason to find the class.
A second table says where the attention goes under the true caption, per timestep range, over the
up blocks' cross-attention layers (those stage one taps for `xattn`): its entropy over the 77 tokens
(ln 77 = 4.34 nats is uniform), the share of it on the caption's class-name tokens, and the
inside/outside ratio of each named class's map with its chance level (head-mean, as stage one
stores it; `diffseg.stages.runs.attention`'s arithmetic, here on the caption the model was trained
with).
Captions: "a photo of a city street, <the classes present, canonical order>", each class name after
its colour word with `--color-words` (as PretrainConfig.color_words writes them). Timesteps and
noise are drawn once (seeded) and shared by the four columns, so the differences are paired.

    python -m experiments.bench_caption_use --model mini
    python -m experiments.bench_caption_use --model .pretrain/mini/model --images 64   # a candidate
"""

from __future__ import annotations

import argparse
import math

import numpy as np


def _swap_processors(unet, new: dict) -> dict:
    """Put the processors `new` ({name: processor}) on `unet`, the rest as they are; -> the originals."""
    original = dict(unet.attn_processors)
    unet.set_attn_processor({k: new.get(k, p) for k, p in original.items()})
    return original


def spread_cross_attention(unet) -> dict:
    """Swap onto every attn2 (cross-attention) a processor whose probabilities are replaced by their
    mean over the image's positions; -> the original processors. (torch is imported here, after
    main() has set the threads.)"""
    from diffseg.pipeline.taps import XattnCaptureProcessor

    class SpreadAttention(XattnCaptureProcessor):
        def mix(self, probs):
            return probs.mean(1, keepdim=True).expand_as(probs)

    return _swap_processors(unet, {k: SpreadAttention() for k in unet.attn_processors if ".attn2." in k})


def watched_names(unet) -> list[str]:
    """The up blocks' cross-attention processors (the layers stage one taps for `xattn`)."""
    return [k for k in unet.attn_processors if k.startswith("up_blocks.") and ".attn2." in k]


def watch_cross_attention(unet) -> tuple[dict, dict]:
    """Swap onto the up blocks' attn2 layers processors that also sum their attention entropy;
    -> ({layer: processor}, the original processors)."""
    from diffseg.pipeline.taps import XattnCaptureProcessor

    class WatchAttention(XattnCaptureProcessor):
        entropy, calls = 0.0, 0

        def mix(self, probs):
            self.entropy += float(-(probs * probs.clamp_min(1e-12).log()).sum(-1).mean())
            self.calls += 1
            return probs

    watched = {k: WatchAttention() for k in watched_names(unet)}
    return watched, _swap_processors(unet, watched)


def attention_stats(watched: dict, positions: list[dict], labels: list) -> tuple[list[float], list[float], list[float]]:
    """(share of attention on the class-name tokens, inside/outside ratio of each named class, its
    chance level: each mask scored on the other named classes' maps) of one batch, from each
    watched layer's head-mean probabilities [B, N, T]."""
    from diffseg.stages.runs.attention import ratios_and_chance

    shares, ratios, chance = list[float](), list[float](), list[float]()
    for proc in watched.values():
        probs = proc.probs_BNT.numpy()
        side = math.isqrt(probs.shape[1])
        for b, pos in enumerate(positions):
            every = [k for ks in pos.values() for k in ks]
            shares.append(float(probs[b][:, every].sum(-1).mean()))
            maps_Khw = [probs[b][:, list(ks)].mean(-1).reshape(side, side) for ks in pos.values()]
            own, mismatched = ratios_and_chance(np.stack(maps_Khw), labels[b], list(pos))
            ratios, chance = ratios + own, chance + mismatched
    return shares, ratios, chance


def main(argv: list[str] | None = None) -> dict:
    """-> {"loss": {"t<1000": {caption: MSE}, ...}, "attention": {"t<1000": {entropy, tokens, share, ratio, chance}, ...}}."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="mini", help="a built-in name or a diffusers directory")
    ap.add_argument("--images", type=int, default=192)
    ap.add_argument("--first", type=int, default=4000, help="first image index (pre-training used 0-3999)")
    ap.add_argument("--zoom", type=float, default=1.0, help="close-ups as in PretrainConfig.zoom (1: none)")
    ap.add_argument("--variety", type=float, default=0.0, help="scenes that leave kinds out, as PretrainConfig.variety")
    ap.add_argument("--color-words", action="store_true", help="name each class with its colour word")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)

    from diffseg.core import threads

    threads.apply(args.threads)
    import torch

    from diffseg.core.classes import CLASS_NAMES, present_classes
    from diffseg.data.demo.pretrain import render_pretrain
    from diffseg.pipeline.models import load_models
    from diffseg.pipeline.prompts import class_token_positions
    from diffseg.pretrain.captions import COLOR_WORDS, MIN_FRACTION, dominant_colors
    from diffseg.pretrain.unet import Tokens, noise_scheduler

    models = load_models(args.model)
    unet, text, vae = models.unet, models.text_encoder, models.vae
    images, labels, captions, positions = [], [], [], []
    for i in range(args.first, args.first + args.images):
        image, label, _ = render_pretrain(0, i, (128, 128), args.zoom, args.variety)
        images.append(image)
        labels.append(label)
        colors = dominant_colors(image, label)
        present = present_classes(label, MIN_FRACTION)
        words = [(f"{COLOR_WORDS[colors[c]]} " if args.color_words else "") + CLASS_NAMES[c] for c in present]
        names = ", ".join(words)
        captions.append(f"a photo of a city street, {names}")
        positions.append(class_token_positions(models.tokenizer, captions[-1], present))
    x = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float() / 127.5 - 1
    with torch.no_grad():
        x0 = torch.cat([vae.encode(x[b : b + 32]).latent_dist.mean for b in range(0, len(x), 32)])
    x0 = x0 * vae.config["scaling_factor"]
    tokens, scheduler = Tokens(models.tokenizer), noise_scheduler()
    g = torch.Generator().manual_seed(0)
    n = len(x0)
    other = captions[7:] + captions[:7]  # another image's classes
    out = {}
    print(
        f"model {args.model}: v-prediction MSE over {n} held-out images (zoom {args.zoom}, variety "
        f"{args.variety}{', colour words' if args.color_words else ''}), paired noise and timesteps"
    )
    print(
        "| timesteps | true caption | empty caption | another image's | true, attention spread | empty - true "
        "| other - true | spread - true |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    attention = {}
    for tmax in (1000, 300, 100):
        t = torch.randint(0, tmax, (n,), generator=g)
        noise = torch.randn(x0.shape, generator=g)
        xt, target = scheduler.add_noise(x0, noise, t), scheduler.get_velocity(x0, noise, t)
        row = {}
        for name, caps in (("true", captions), ("empty", [""] * n), ("other", other), ("spread", captions)):
            watched: dict = {}
            if name == "spread":
                original = spread_cross_attention(unet)
            elif name == "true":
                watched, original = watch_cross_attention(unet)
            total, shares, ratios, chance = 0.0, list[float](), list[float](), list[float]()
            with torch.no_grad():
                for b in range(0, n, 32):
                    emb = text(tokens(caps[b : b + 32]))[0]
                    pred = unet(xt[b : b + 32], t[b : b + 32], emb).sample
                    total += torch.nn.functional.mse_loss(pred, target[b : b + 32], reduction="sum").item()
                    if watched:
                        batch = attention_stats(watched, positions[b : b + 32], labels[b : b + 32])
                        shares, ratios, chance = shares + batch[0], ratios + batch[1], chance + batch[2]
            row[name] = total / target.numel()
            if watched:
                attention[f"t<{tmax}"] = dict(
                    entropy=sum(p.entropy for p in watched.values()) / sum(p.calls for p in watched.values()),
                    tokens=int(emb.shape[1]),
                    share=float(np.mean(shares)),
                    ratio=float(np.mean(ratios)) if ratios else float("nan"),
                    chance=float(np.mean(chance)) if chance else float("nan"),
                )
            if name in ("spread", "true"):
                unet.set_attn_processor(original)
        out[f"t<{tmax}"] = row
        rel = {k: (row[k] - row["true"]) / row["true"] for k in ("empty", "other", "spread")}
        print(
            f"| t < {tmax} | {row['true']:.4f} | {row['empty']:.4f} | {row['other']:.4f} | {row['spread']:.4f} | "
            f"{100 * rel['empty']:+.2f} % | {100 * rel['other']:+.2f} % | {100 * rel['spread']:+.2f} % |"
        )
    print(f"\nCross-attention under the true caption ({len(watched_names(unet))} up-block attn2 layers):")
    print(
        "| timesteps | entropy (nats) | uniform | share on class names | uniform share | class map inside/outside "
        "| chance level |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|")
    named = float(np.mean([sum(len(ks) for ks in pos.values()) for pos in positions]))
    for key, a in attention.items():
        print(
            f"| {key.replace('<', ' < ')} | {a['entropy']:.2f} | {np.log(a['tokens']):.2f} | {a['share']:.3f} | "
            f"{named / a['tokens']:.3f} | {a['ratio']:.3f} | {a['chance']:.3f} |"
        )
    return {"loss": out, "attention": attention}


if __name__ == "__main__":
    main()
