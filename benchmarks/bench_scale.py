"""What scale means: GPU-hours, bytes and files of stage one for a whole dataset, as an ESTIMATE.

No GPU number has been measured yet (`benchmarks/gpu.sh` will measure them where a GPU is lent),
so the time is estimated from FLOPs: the SD 2.1 U-Net and VAE encoder are built on PyTorch's
`meta` device (no weights, no memory) and counted with `torch.utils.flop_counter.FlopCounterMode`
at the crop size; U-Net evaluations per sample follow from the preset (evaluated steps up to the
last saved one) and the branch (uncond: one sample per step; cond: 1 + n present classes prompt
copies per step). Seconds = FLOPs / an ASSUMED sustained rate (`--tflops`, default 400: about 40 %
of an H100 SXM's dense fp16 peak, a typical share for a U-Net at batch 1-16; measure it with
`benchmarks/gpu.sh` and pass the measured rate). Bytes per sample come from the codecs' own
`stored_bytes` for SD 2.1's layer shapes (the same numbers `extract --dry-run` prints); files per
sample count the cache format-2 layout (one chunk file per sample per array, plus the label and
the status marker).

Run: `python -m benchmarks.bench_scale [--images 24966] [--tflops 400]` (seconds, CPU only).
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from typing import Any

# The two recipes of `diffseg extract` (stages/extract/recipe.py) at GTAV scale: the classes whose
# masked prompts run in the cond branch, and an ASSUMED count of them present in a 512 crop (GTAV
# crops show about half of the 19 classes; the paper recipe's 5 rarer classes about 2).
GTAV_IMAGES = 24_966


@dataclass(frozen=True)
class Recipe:
    name: str
    preset: str
    views: int
    present: int  # assumed classes present per crop among the active ones (cond K = 1 + present)


RECIPES = (Recipe("diffseg", "lite", 1, 10), Recipe("paper", "reference", 2, 2))
CODECS = ("raw", "bitround", "int8", "pca")


def flops(size: int = 512) -> dict[str, float]:
    """FLOPs of one SD 2.1 U-Net forward (one sample) and one VAE encode at size x size."""
    import torch
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from torch.utils.flop_counter import FlopCounterMode

    from diffseg.pipeline.builtin import SD21_UNET

    with torch.device("meta"):
        unet: Any = UNet2DConditionModel(**SD21_UNET)
        # stabilityai/stable-diffusion-2-1 vae/config.json's widths and depth
        vae: Any = AutoencoderKL(
            down_block_types=("DownEncoderBlock2D",) * 4,
            up_block_types=("UpDecoderBlock2D",) * 4,
            block_out_channels=(128, 256, 512, 512),
            layers_per_block=2,
            latent_channels=4,
        )
        x = torch.empty(1, 4, size // 8, size // 8)
        emb = torch.empty(1, 77, int(SD21_UNET["cross_attention_dim"]))  # type: ignore[call-overload]
        image = torch.empty(1, 3, size, size)
    with FlopCounterMode(display=False) as count:
        unet(x, torch.tensor(500, device="meta"), encoder_hidden_states=emb)
    unet_flops = count.get_total_flops()
    with FlopCounterMode(display=False) as count:
        vae.encode(image)
    return {"unet": float(unet_flops), "vae": float(count.get_total_flops())}


def per_sample(recipe: Recipe, size: int = 512) -> dict:
    """U-Net evaluations, bytes per codec and files of one training sample (both branches)."""
    from diffseg.cache.codecs import normalize_spec, resolve
    from diffseg.cache.packs import pack_layers
    from diffseg.core.layers import layer_specs
    from diffseg.pipeline.builtin import SD21_UNET
    from diffseg.pipeline.config import preset

    cfg = preset(recipe.preset)
    evals = cfg.last_index + 1
    specs = layer_specs(SD21_UNET, cfg.layers, (size, size), 19)
    shapes = {f"{b}/{n}": (len(cfg.save_steps), specs[n].channels, *specs[n].size) for b in ("uncond", "cond")
              for n in cfg.layers}  # fmt: skip
    nbytes, files = {}, {}
    for name in CODECS:
        codecs = resolve(normalize_spec(name), shapes)
        nbytes[name] = sum(c.stored_bytes(shapes[k]) for k, c in codecs.items()) + size * size  # + labels
        packs = pack_layers(("uncond", "cond"), specs, codecs)  # the cache's packing (cache/packs.py)
        parts = {p: len(codecs[f"{p.partition('/')[0]}/{ls[0]}"].stored(shapes[f"{p.partition('/')[0]}/{ls[0]}"]))
                 for p, ls in packs.items()}  # fmt: skip
        files[name] = sum(parts.values()) + 3  # + labels, status, source hash
    return {
        "unet_evals": evals * (1 + 1 + recipe.present),  # uncond: 1 per step; cond: K = 1 + present
        "bytes": nbytes,
        "files": files,
        "layers": len(cfg.layers),
        "steps": evals,
    }


def table(images: int, tflops: float, size: int = 512) -> str:
    f = flops(size)
    lines = [
        f"SD 2.1 at {size}x{size}: U-Net forward {f['unet'] / 1e12:.2f} TFLOP per sample, VAE encode "
        f"{f['vae'] / 1e12:.2f} TFLOP per image (counted on the meta device). Time at an ASSUMED sustained "
        f"{tflops:.0f} TFLOP/s per GPU; {images:,} images.",
        "",
        "| recipe | preset, views | U-Net evals per sample | GPU-hours (estimate) | codec | per sample | "
        "whole dataset | files |",
        "|---|---|---:|---:|---|---:|---:|---:|",
    ]
    for r in RECIPES:
        s = per_sample(r, size)
        samples = images * r.views
        hours = samples * (s["unet_evals"] * f["unet"] + f["vae"]) / (tflops * 1e12) / 3600
        for i, codec in enumerate(CODECS):
            head = (
                f"| {r.name} | {r.preset} ({s['steps']} steps, {s['layers']} layers), {r.views} | "
                f"{s['unet_evals']} (K = {1 + r.present}) | {hours:.1f} |"
                if i == 0
                else "| | | | |"
            )
            b = s["bytes"][codec]
            lines.append(
                f"{head} {codec} | {b / 2**20:.1f} MiB | {samples * b / 2**40:.2f} TiB | {samples * s['files'][codec]:,} |"
            )
    lines.append(
        "\nbitround is priced at its upper bound (raw): its lossless stage depends on the values. "
        "Files: one chunk file per sample per pack (a branch's layers of one stride), plus labels, status and the "
        "source hash; int8 stores five arrays per pack."
    )
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--images", type=int, default=GTAV_IMAGES)
    ap.add_argument("--tflops", type=float, default=400.0, help="assumed sustained TFLOP/s per GPU")
    ap.add_argument("--size", type=int, default=512)
    args = ap.parse_args()
    print(table(args.images, args.tflops, args.size))


if __name__ == "__main__":
    main()
