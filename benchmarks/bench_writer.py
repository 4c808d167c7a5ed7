"""Writer overhead: CacheWriter.write_sample against numpy.tofile of the same bytes.

Run: `python benchmarks/bench_writer.py`. Two synthetic sample shapes (as bench_loader's): SD 2.1
`5step` at 256 px (res0-2 and blk0-2 of up blocks 1-3, 5 saved steps: 34.6 MB of megabyte
chunks) and a tiny-model `lite`-like set at 128 px (res2 of up1-3, 3 steps: kilobyte chunks).
Per shape, in one run and interleaved over rounds (each keeps its best): the writer with its
direct chunk files (cache/chunkwrite.py), the writer through zarr's array API (what it did
before: the chunk files are byte-identical), and numpy.tofile of the feature arrays into one
flat folder, and (the floor of this layout) tofile into zarr's nested chunk folders.
ratio = tofile time / writer time (1.0: the writer costs what the bytes cost).

The writer also writes what tofile does not: the label (zstd), the status marker, a crc32c per
chunk, and zarr's nested chunk folders (c/<i>/0/0/0: three new folders per array per sample,
which dominate kilobyte samples).
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from diffseg.cache import CacheReader, CacheWriter
from diffseg.cache import writer as writer_module
from diffseg.cache.synthetic import SD21, TINY, make_cache, street_label


@dataclass(frozen=True, kw_only=True)
class Shape:
    """A synthetic sample shape: make_cache's geometry of one benchmark."""

    unet: dict
    layers: tuple[str, ...]
    save_steps: tuple[int, ...]
    res: int  # square side (px)
    branches: tuple[str, ...] = ("uncond",)
    xattn_classes: int = 0  # channels of the xattn layers (0: the shape has none)


SHAPES = {
    "sd21 5step @256": Shape(
        unet=SD21,
        layers=tuple(f"up{b}.{k}{j}" for b in (1, 2, 3) for k in ("res", "blk") for j in (0, 1, 2)),
        save_steps=tuple(range(5)),
        res=256,
    ),
    "tiny lite @128": Shape(unet=TINY, layers=tuple(f"up{b}.res2" for b in (1, 2, 3)), save_steps=(0, 1, 2), res=128),
}


def _cache(path: str | Path, shape: str | Shape, n: int, packing: str = "stride") -> tuple[dict, np.ndarray]:
    """An empty cache of n samples of `shape` (a name of SHAPES, or a Shape) at `path` (a folder or
    a store URL) and one sample's arrays to write into it: (features, label)."""
    s = SHAPES[shape] if isinstance(shape, str) else shape
    make_cache(
        path,
        n,
        unet=s.unet,
        layers=s.layers,
        xattn_classes=s.xattn_classes,
        resolution=(s.res, s.res),
        save_steps=s.save_steps,
        branches=s.branches,
        write=0,
        packing=packing,
    )
    r = CacheReader(path)
    rng = np.random.default_rng(0)
    feats = {k: rng.standard_normal(r.array_shape(k), dtype=np.float32).astype(np.float16) for k in r.feature_names()}
    return feats, street_label(rng, (s.res, s.res))


def _write_all(path: str | Path, n: int, feats: dict, label: np.ndarray, direct: bool) -> float:
    saved = writer_module.chunk_writer
    if not direct:
        writer_module.chunk_writer = lambda array, root: None  # zarr's API
    try:
        w = CacheWriter.open(path)
        t0 = time.perf_counter()
        for i in range(n):
            w.write_sample(i, feats, label)
        return time.perf_counter() - t0
    finally:
        writer_module.chunk_writer = saved


def _tofile_all(folder: Path, n: int, feats: dict) -> float:
    folder.mkdir()
    t0 = time.perf_counter()
    for i in range(n):
        for k, a in feats.items():
            a.tofile(folder / f"{i}-{k.replace('/', '_')}")
    return time.perf_counter() - t0


def _tofile_nested(folder: Path, n: int, feats: dict) -> float:
    """tofile into zarr's chunk paths (<array>/c/<i>/0/0/0, folders made as needed): the floor the
    file system's metadata operations set for a one-chunk-per-sample layout."""
    t0 = time.perf_counter()
    for i in range(n):
        for k, a in feats.items():
            d = folder / k / "c" / str(i) / "0" / "0"
            d.mkdir(parents=True, exist_ok=True)
            a.tofile(d / "0")
    return time.perf_counter() - t0


def run(samples: dict[str, int] | None = None, rounds: int = 3) -> dict:
    samples = samples or {"sd21 5step @256": 8, "tiny lite @128": 200}
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        for shape, n in samples.items():
            times: dict[str, list[float]] = {"direct": [], "zarr": [], "tofile": [], "nested": []}
            nbytes = 0
            for r in range(rounds):
                for how in times:
                    path = Path(tmp) / f"{how}-{r}"
                    feats, label = _cache(path, shape, n)
                    nbytes = sum(a.nbytes for a in feats.values()) * n
                    if how == "tofile":
                        times[how].append(_tofile_all(Path(tmp) / f"raw-{r}", n, feats))
                    elif how == "nested":
                        times[how].append(_tofile_nested(Path(tmp) / f"nested-raw-{r}", n, feats))
                        shutil.rmtree(Path(tmp) / f"nested-raw-{r}")
                    else:
                        times[how].append(_write_all(path, n, feats, label, direct=how == "direct"))
                    shutil.rmtree(path)
                shutil.rmtree(Path(tmp) / f"raw-{r}")
            best = {k: min(v) for k, v in times.items()}
            out[shape] = {
                "samples": n,
                "bytes": nbytes,
                "seconds": best,
                "runs": times,
                "ratio_direct": best["tofile"] / best["direct"],
                "ratio_zarr": best["tofile"] / best["zarr"],
                "ratio_nested": best["nested"] / best["direct"],
            }
    return out


def markdown(res: dict) -> str:
    lines = [
        "| sample shape | samples | MB | tofile MB/s | writer MB/s (direct chunks) | writer MB/s (zarr API, before) "
        "| ratio direct | ratio before | ms/sample direct | ms/sample before | ratio vs tofile into zarr's folders |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for shape, r in res.items():
        s, mb, n = r["seconds"], r["bytes"] / 1e6, r["samples"]
        lines.append(
            f"| {shape} | {n} | {mb:.0f} | {mb / s['tofile']:.0f} | {mb / s['direct']:.0f} | {mb / s['zarr']:.0f} | "
            f"{r['ratio_direct']:.2f} | {r['ratio_zarr']:.2f} | {s['direct'] / n * 1e3:.2f} | {s['zarr'] / n * 1e3:.2f} | "
            f"{r['ratio_nested']:.2f} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=3)
    print(markdown(run(rounds=p.parse_args().rounds)))
