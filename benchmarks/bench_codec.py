"""Codec choice for the feature cache: compression ratio and encode/decode throughput.

Two parts. `--features RAW_CACHE ...` measures diffseg's feature codecs (diffseg/cache/codecs.py)
on the features of real extractions: every cache is converted (`cache convert`) to each codec, and
the table gives the ratio on disk, the relative reconstruction error per layer (||x - x'|| / ||x||
over the samples outside pca's calibration subset when there are any), the decode throughput
(numpy, and torch on the CPU, one thread, MB of float16 features out per second) and the bytes of
one 512 px sample per branch at SD 2.1 shapes for the `reference` and `lite` feature sets (int8 and
pca are fixed-size; bitround's lossless stage is taken at the ratio measured here). Caches used for
the README (uncond branch, demo dataset, one torch thread):

    diffseg extract --dataset demo --model mini --preset 5step --resolution 128x128 --limit 8 \
        --branches uncond --out cache/bench-mini-5step
    diffseg extract --dataset demo --model sd21-random --preset lite --resolution 128x128 --limit 4 \
        --branches uncond --out cache/bench-sd21-lite
    python -m benchmarks.bench_codec --features cache/bench-mini-5step cache/bench-sd21-lite

Without `--features`: the lossless codecs. Run: `python benchmarks/bench_codec.py [--cache CACHE_DIR]`. Without a cache it builds
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


# -- diffseg's feature codecs -------------------------------------------------------------------
FEATURE_CODECS = ("raw", "bitround:keepbits=7", "bitround:keepbits=5", "int8", "pca:k=64", "pca:k=32", "pca:k=16")


def feature_codec_table(caches: list[str], work: str) -> None:
    import torch

    from diffseg.cache import CacheReader
    from diffseg.cache.codecs import calibration_indices, decode, parse_spec
    from diffseg.cache.convert import convert

    torch.set_num_threads(1)
    measured_bitround: dict[str, list[float]] = {}
    for src in caches:
        r0 = CacheReader(src)
        names = r0.feature_names()
        idx = r0.complete_indices()
        print(
            f"\n{src}: model {r0.record.model.name}, {len(idx)} samples, steps {r0.save_steps}, "
            f"{len(names)} arrays ({', '.join(sorted({r0.record.layers[n.split('/')[1]].kind for n in names}))})"
        )
        print(
            f"  {'codec':34s} {'ratio':>6s} {'err mean':>9s} {'err max':>8s} {'worst layer':>14s} "
            f"{'np MB/s':>8s} {'torch MB/s':>10s}"
        )
        for spec in FEATURE_CODECS:
            codec = parse_spec(spec)[0]
            calib = max(1, len(idx) // 2)  # pca: fitted on half, the error measured on the other half
            spec_run = f"{spec},calib={calib}" if codec.name == "pca" else spec
            out = f"{work}/{abs(hash((src, spec)))}"
            convert(src, spec_run, out, progress=False)
            r = CacheReader(out)
            held_out = [i for i in idx if i not in set(calibration_indices(r.n, calib, 0))] or idx
            errs = {}
            for name in names:
                num = den = 0.0
                for i in held_out:
                    x = r0.read(i, [name])[name].astype(np.float64)
                    y = r.read(i, [name])[name].astype(np.float64)
                    num += float(((x - y) ** 2).sum())
                    den += float((x**2).sum())
                errs[name] = (num / den) ** 0.5
            stored, decoded = r.stored_feature_bytes()
            np_rate, torch_rate = decode_rates(r, names, idx, decode)
            worst = max(errs, key=errs.__getitem__)
            print(
                f"  {spec_run:34s} {decoded / stored:6.2f} {np.mean(list(errs.values())):9.2e} "
                f"{errs[worst]:8.2e} {worst.split('/')[1]:>14s} {np_rate:8.0f} {torch_rate:10.0f}"
            )
            if codec.name != "raw":
                print("      per layer: " + ", ".join(f"{n.split('/', 1)[1]} {errs[n]:.1e}" for n in names))
            if codec.name == "bitround":
                measured_bitround.setdefault(spec, []).append(decoded / stored)
    sd_shaped_decode()
    sd21_bytes(measured_bitround)


def decode_rates(r, names: list[str], idx: list[int], decode) -> tuple[float, float]:
    """MB/s of float16 features out: numpy = read the stored parts (page cache; bitround's zstd runs
    here) and expand them on the CPU; torch = expand parts already in memory (CPU, the device's part)."""
    import torch

    out_mb = sum(int(np.prod(r.array_shape(n))) * 2 for n in names) * len(idx) / 1e6
    parts = {n: [r.read_parts(i, n) for i in idx] for n in names}  # warm the page cache
    t0 = time.perf_counter()
    for n in names:
        c, sh = r.codec(n), r.shared(n)
        for i in idx:
            c.decode_numpy(r.read_parts(i, n), sh).astype(np.float16)
    t_np = time.perf_counter() - t0
    tparts = {n: [{s: torch.from_numpy(a)[None] for s, a in p.items()} for p in parts[n]] for n in names}
    tshared = {n: {s: torch.from_numpy(a) for s, a in r.shared(n).items()} for n in names}
    t0 = time.perf_counter()
    for n in names:
        c = r.codec(n)
        for p in tparts[n]:
            decode(c, p if r.expands(n) else p[""], tshared[n] or None)
    t_torch = time.perf_counter() - t0
    return out_mb / t_np, out_mb / t_torch


def sd_shaped_sample() -> list[np.ndarray]:
    """One sample's float16 features at SD 2.1 `5step` shapes for a 256 px crop (up blocks 1-3), synthetic
    activations with a few very large ones, seeded."""
    rng = np.random.default_rng(0)
    xs = [fake_features(rng, 5, c, s, s) for c, s in [(1280, 8), (640, 16), (320, 32)]]
    for x in xs:
        x.reshape(-1)[rng.integers(0, x.size, x.size // 2000)] = 300  # a few very large activations
    return xs


def fitted_shared(codec, xs: list[np.ndarray]) -> list[dict]:
    """Per array, the codec's shared arrays fitted on that array itself (pca's basis and mean; {} otherwise)."""
    from diffseg.cache.codecs import PcaFit

    shared = []
    for x in xs:
        fit = PcaFit(x.shape[1])
        fit.add(x)
        shared.append(fit.basis(codec.k(x.shape[1])) if codec.name == "pca" else {})
    return shared


def sd_shaped_decode() -> None:
    """Decode MB/s (float16 out) at SD 2.1 `5step` shapes for a 256 px crop (synthetic activations with
    spikes; one thread): the per-call overheads of the small real caches above do not dominate here."""
    import torch

    from diffseg.cache.codecs import decode, parse_codec

    xs = sd_shaped_sample()
    mb = sum(x.nbytes for x in xs) / 1e6
    print(f"\nSD 2.1 5step shapes, 256 px, one sample ({mb:.1f} MB float16), decode MB/s, 1 thread")
    print(f"  {'codec':24s} {'numpy':>8s} {'torch':>8s} {'rel err':>8s}")
    for spec in ("int8", "pca:k=32"):
        codec = parse_codec(spec)
        shared = fitted_shared(codec, xs)
        parts = [codec.encode(x, sh) for x, sh in zip(xs, shared)]
        t0 = time.perf_counter()
        ys = [codec.decode_numpy(p, sh).astype(np.float16) for p, sh in zip(parts, shared)]
        t_np = time.perf_counter() - t0
        tp = [{k: torch.from_numpy(v)[None] for k, v in p.items()} for p in parts]
        ts = [{k: torch.from_numpy(v) for k, v in sh.items()} or None for sh in shared]
        t0 = time.perf_counter()
        for p, sh in zip(tp, ts):
            decode(codec, p, sh)
        t_t = time.perf_counter() - t0
        err = np.mean(
            [np.linalg.norm(y.astype(np.float32) - x) / np.linalg.norm(x.astype(np.float32)) for x, y in zip(xs, ys)]
        )
        print(f"  {spec:24s} {mb / t_np:8.0f} {mb / t_t:8.0f} {err:8.1e}")


def sd_shaped_encode(device: str, repeat: int = 3) -> None:
    """Encode MB/s (float16 in) at SD 2.1 `5step` shapes for a 256 px crop: numpy's Codec.encode (what
    the writer's one thread ran before) against encode_torch on `device` (what extraction runs, before
    the copy to the host; the copy of the parts included), same input, best of `repeat`."""
    import torch

    from diffseg.cache.codecs import encode_torch, parse_codec

    xs = sd_shaped_sample()
    mb = sum(x.nbytes for x in xs) / 1e6
    dev = torch.device(device)
    txs = [torch.from_numpy(x).to(dev) for x in xs]
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    print(f"\nSD 2.1 5step shapes, 256 px, one sample ({mb:.1f} MB float16), encode MB/s, torch threads "
          f"{torch.get_num_threads()}, torch on {device}")  # fmt: skip
    print(f"  {'codec':24s} {'numpy':>8s} {'torch':>8s} {'ratio':>6s}")
    for spec in ("int8", "pca:k=32"):
        codec = parse_codec(spec)
        shared = fitted_shared(codec, xs)
        tshared = [{k: torch.from_numpy(v).to(dev) for k, v in sh.items()} or None for sh in shared]
        t_np = t_t = float("inf")
        for _ in range(repeat):
            t0 = time.perf_counter()
            for x, sh in zip(xs, shared):
                codec.encode(x, sh)
            t_np = min(t_np, time.perf_counter() - t0)
            sync()
            t0 = time.perf_counter()
            for tx, tsh in zip(txs, tshared):
                {k: v.cpu().numpy() for k, v in encode_torch(codec, tx, tsh).items()}
            t_t = min(t_t, time.perf_counter() - t0)
        print(f"  {spec:24s} {mb / t_np:8.0f} {mb / t_t:8.0f} {t_np / t_t:6.1f}")


def sd21_bytes(measured_bitround: dict[str, list[float]]) -> None:
    """Bytes of one 512 px sample per branch at SD 2.1 shapes (geometry from the U-Net config)."""
    from diffseg.cache.codecs import resolve
    from diffseg.core.layers import layer_specs
    from diffseg.pipeline.config import preset
    from diffseg.pipeline.models import unet_config

    print("\nSD 2.1 shapes, 512 px crop, one branch (int8, pca: exact sizes; bitround: raw / measured ratio)")
    print(f"  {'codec':24s} {'reference MiB':>14s} {'lite MiB':>9s}")
    for spec in FEATURE_CODECS:
        row = []
        for name in ("reference", "lite"):
            traj = preset(name)
            specs = layer_specs(unet_config("sd21-random"), traj.layers, (512, 512), 19)
            S = len(traj.save_steps)
            shapes = {f"uncond/{n}": (S, sp.channels, *sp.size) for n, sp in specs.items()}
            b = float(sum(c.stored_bytes(shapes[k]) for k, c in resolve(spec, shapes).items()))
            if spec in measured_bitround:
                b = b / min(measured_bitround[spec])  # the worst ratio measured
            row.append(b / 2**20)
        print(f"  {spec:24s} {row[0]:14.1f} {row[1]:9.2f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cache", help="measure the arrays of this cache instead of synthetic ones")
    ap.add_argument("--features", nargs="+", help="raw caches: the table of diffseg's feature codecs")
    ap.add_argument("--work", default=None, help="folder for the converted caches (default: a temporary one)")
    ap.add_argument("--encode", action="store_true", help="only the encode MB/s of int8 and pca, numpy against torch")
    ap.add_argument("--device", default="cpu", help="--encode: the torch side's device (e.g. cuda)")
    ap.add_argument("--threads", type=int, default=1, help="--encode: torch threads (numpy's encode uses one)")
    args = ap.parse_args()
    if args.encode:
        import torch

        torch.set_num_threads(args.threads)
        sd_shaped_encode(args.device)
        return
    from diffseg.cache.fastread import keep_freed_memory

    keep_freed_memory()  # as the commands that read caches do (cache/fastread.py)
    if args.features:
        import tempfile

        with tempfile.TemporaryDirectory(dir=args.work) as work:
            feature_codec_table(args.features, work)
        return
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
