"""Codec choice for the feature cache: compression ratio and encode/decode throughput.

Run: `python benchmarks/bench_codec.py [--cache CACHE_DIR]`. Without a cache it builds
float16 activations with the structure of U-Net features (spatially smooth maps, a
ReLU/SiLU-like skew, per-channel scales, some near-dead channels; cross-attention maps in
[0, 1]) at SD 2.1 shapes for a 256 px crop, and Cityscapes-like uint8 label maps (large
constant regions). With --cache it measures the arrays of a real cache instead.
Every codec is timed on the same bytes in the same run; the ratio is raw/compressed.
"""

from __future__ import annotations

import argparse
import time

import numcodecs
import numpy as np
from numcodecs import Blosc, Zstd


def smooth_noise(rng: np.random.Generator, shape_CHW: tuple[int, int, int], passes: int = 2) -> np.ndarray:
    """Box-blurred Gaussian noise: neighbouring pixels are correlated, like conv features."""
    x: np.ndarray = rng.standard_normal(shape_CHW).astype(np.float32)  # numpy's stubs type x / 3 as float64
    for _ in range(passes):
        x = (x + np.roll(x, 1, 1) + np.roll(x, -1, 1)) / 3
        x = (x + np.roll(x, 1, 2) + np.roll(x, -1, 2)) / 3
    return x / x.std()


def fake_features(rng: np.random.Generator, S: int, C: int, h: int, w: int) -> np.ndarray:
    """[S, C, h, w] float16 activations: SiLU of smooth maps with per-channel scale/shift."""
    base_CHW = smooth_noise(rng, (C, h, w))
    scale_C11 = rng.lognormal(0.0, 0.8, (C, 1, 1)).astype(np.float32)
    shift_C11 = rng.normal(-0.5, 0.7, (C, 1, 1)).astype(np.float32)
    out = []
    for s in range(S):  # steps differ a little, like neighbouring timesteps
        x = base_CHW + 0.3 * (s + 1) * smooth_noise(rng, (C, h, w))
        x = x * scale_C11 + shift_C11
        out.append(x * 0.5 * (1 + np.tanh(x / 2)))  # SiLU, without exp overflow
    return np.stack(out).astype(np.float16)


def fake_xattn(rng: np.random.Generator, S: int, K: int, h: int, w: int) -> np.ndarray:
    """[S, K, h, w] float16 attention probabilities: softmax over class logits per pixel."""
    logits = np.stack([smooth_noise(rng, (K, h, w)) * 3 for _ in range(S)])
    p = np.exp(logits - logits.max(1, keepdims=True))
    return (p / p.sum(1, keepdims=True) * 0.3).astype(np.float16)


def fake_label(rng: np.random.Generator, H: int, W: int) -> np.ndarray:
    """[H, W] uint8 train ids: horizontal bands (road, building, sky) with rectangles."""
    lab = np.full((H, W), 2, np.uint8)
    lab[: H // 3] = 10
    lab[2 * H // 3 :] = 0
    for _ in range(20):
        y, x = rng.integers(0, H - 8), rng.integers(0, W - 8)
        lab[y : y + rng.integers(4, H // 4), x : x + rng.integers(4, W // 6)] = rng.choice([5, 8, 11, 13, 255])
    return lab


CODECS = {
    "none": None,
    "zstd-1": Zstd(level=1),
    "zstd-3": Zstd(level=3),
    "blosc-lz4-shuffle": Blosc(cname="lz4", clevel=5, shuffle=Blosc.SHUFFLE),
    "blosc-zstd1-shuffle": Blosc(cname="zstd", clevel=1, shuffle=Blosc.SHUFFLE),
    "blosc-lz4-bitshuffle": Blosc(cname="lz4", clevel=5, shuffle=Blosc.BITSHUFFLE),
}


def measure(codec, chunks: list[np.ndarray], repeat: int = 3) -> tuple[float, float, float]:
    """-> (ratio raw/compressed, encode MB/s, decode MB/s) over the chunks, best of `repeat`."""
    raw = sum(c.nbytes for c in chunks)
    if codec is None:
        t0 = time.perf_counter()
        for _ in range(repeat):
            for c in chunks:
                np.frombuffer(c.tobytes(), c.dtype)  # the copy a plain read would make
        dt = (time.perf_counter() - t0) / repeat
        return 1.0, raw / dt / 1e6, raw / dt / 1e6
    enc_t, dec_t = [], []
    for _ in range(repeat):
        t0 = time.perf_counter()
        encoded = [codec.encode(c) for c in chunks]
        enc_t.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        for e in encoded:
            codec.decode(e)
        dec_t.append(time.perf_counter() - t0)
    comp = sum(len(e) for e in encoded)
    return raw / comp, raw / min(enc_t) / 1e6, raw / min(dec_t) / 1e6


def synthetic_sets(rng: np.random.Generator) -> dict[str, list[np.ndarray]]:
    """SD 2.1 shapes at 256 px, 5 saved steps: up1 1280@8, up2 640@16, up3 320@32."""
    feats = [fake_features(rng, 5, c, s, s) for c, s in [(1280, 8), (640, 16), (320, 32)] for _ in range(2)]
    return {
        "features f16": feats,
        "xattn f16": [fake_xattn(rng, 5, 19, 32, 32) for _ in range(4)],
        "labels u8 512": [fake_label(rng, 512, 512) for _ in range(8)],
    }


def cache_sets(path: str) -> dict[str, list[np.ndarray]]:
    from diffseg.cache import CacheReader

    r = CacheReader(path)
    idx = r.complete_indices()[:8]
    sets: dict[str, list[np.ndarray]] = {"labels u8": [r.read(i, ["labels"])["labels"] for i in idx]}
    for name, spec in r.layer_arrays().items():
        key = f"{spec.kind} f16"
        sets.setdefault(key, []).extend(r.read(i, [name])[name] for i in idx)
    return sets


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cache", help="measure the arrays of this cache instead of synthetic ones")
    args = ap.parse_args()
    numcodecs.blosc.set_nthreads(1)  # DataLoader workers decode one chunk each; 1 thread is the fair unit
    sets = cache_sets(args.cache) if args.cache else synthetic_sets(np.random.default_rng(0))
    for title, chunks in sets.items():
        mb = sum(c.nbytes for c in chunks) / 1e6
        print(f"\n{title}: {len(chunks)} chunks, {mb:.1f} MB")
        print(f"  {'codec':22s} {'ratio':>6s} {'enc MB/s':>9s} {'dec MB/s':>9s}")
        for name, codec in CODECS.items():
            ratio, enc, dec = measure(codec, chunks)
            print(f"  {name:22s} {ratio:6.2f} {enc:9.0f} {dec:9.0f}")


if __name__ == "__main__":
    main()
