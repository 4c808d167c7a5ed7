"""What `train --flip-features` approximates: flipped features of an image vs features of the flipped image.

For each layer of the `lite` preset's trajectory (every saved step), on demo street images:

    flip error  = ||flip(F(x)) - F(flip(x))|| / ||F(flip(x))||      (same sample id: same noise draws)
    noise floor = ||F(x; id a) - F(x; id b)|| / ||F(x; id b)||      (the same image, other noise draws)

A U-Net is not mirror-equivariant (padding, attention positions, the un-mirrored trajectory
noise), so the flip error is > 0; the noise floor is how much two extractions of the same
image already differ, the scale against which the flip error is small or not.

Run: `python benchmarks/bench_flip.py --model tiny --size 128 --images 4`
     `python benchmarks/bench_flip.py --model sd21-random --size 256 --images 1` (minutes on a CPU).
Numbers: see README "Training options (stage two)".
"""

from __future__ import annotations

import argparse

import numpy as np
import torch


def rel_l2(a: np.ndarray, b: np.ndarray) -> float:
    a64, b64 = a.astype(np.float64), b.astype(np.float64)
    return float(np.linalg.norm(a64 - b64)) / max(float(np.linalg.norm(b64)), 1e-12)


def run(model: str = "tiny", size: int = 128, images: int = 4, preset_name: str = "lite") -> dict[str, dict]:
    """{layer: {"flip": mean flip error, "floor": mean noise floor}} over `images` demo images."""
    from diffseg.data import open_dataset
    from diffseg.pipeline.config import preset
    from diffseg.pipeline.extractor import FeatureExtractor
    from diffseg.pipeline.models import load_models

    ex = FeatureExtractor(load_models(model), preset(preset_name))
    ds = open_dataset("demo", demo_size=(size, size))
    flip: dict[str, list[float]] = {}
    floor: dict[str, list[float]] = {}
    for i in range(images):
        image = ds.load(i).image
        a = ex.uncond(image, f"img{i}")
        b = ex.uncond(np.ascontiguousarray(image[:, ::-1]), f"img{i}")
        other = ex.uncond(image, f"img{i}-other-name")
        for layer in a:
            flip.setdefault(layer, []).append(rel_l2(a[layer][..., ::-1], b[layer]))
            floor.setdefault(layer, []).append(rel_l2(a[layer], other[layer]))
    return {layer: {"flip": float(np.mean(flip[layer])), "floor": float(np.mean(floor[layer]))} for layer in flip}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="tiny")
    p.add_argument("--size", type=int, default=128)
    p.add_argument("--images", type=int, default=4)
    p.add_argument("--preset", default="lite")
    p.add_argument("--threads", type=int, default=None)
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    result = run(args.model, args.size, args.images, args.preset)
    print(f"{args.model} {args.size}px {args.preset}, {args.images} image(s): relative L2 per layer")
    print(f"{'layer':<12} {'flip error':>10} {'noise floor':>11}")
    for layer, r in result.items():
        print(f"{layer:<12} {r['flip']:>10.3f} {r['floor']:>11.3f}")


if __name__ == "__main__":
    main()
