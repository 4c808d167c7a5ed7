"""Cache format 3's stride packs against format 2's layout (one array per layer), side by side.

Run: `python benchmarks/bench_packs.py [--quick] [--dir DIR]`. The two packings of
`CacheWriter.create` (cache/packs.py): "layer", one Zarr array per feature array "<branch>/<layer>"
(format 2's files: one chunk file per layer per sample), and "stride", a branch's layers of one
stride side by side in one array (format 3's default: a chunk file per stride per sample). Three
synthetic shapes: bench_writer's SD 2.1 `5step` at 256 px (res0-2 and blk0-2 of up blocks 1-3,
5 saved steps, megabyte chunks) and tiny-model `lite`-like set at 128 px (res2 of up1-3, 3 steps),
both one branch as there, and a demo-like one: the tiny U-Net's res, blk and xattn 0-2 of up1-3 (27
layers, the xattn layers with 19 channels, one per class), both branches, 64 px, 3 saved steps.
`--quick` leaves the SD shape out and uses fewer samples and rounds (the runner's smoke suite).

Per shape and packing, in one run:

1. files per sample: the feature chunk files and every chunk file a sample owns (packs, labels,
   status, sample_sha256; from the arrays' metadata), and the feature files' sizes;
2. S3 requests per sample, counted by moto's S3 server itself (benchmarks/_moto.py wraps its WSGI
   application): writing samples with CacheWriter into an s3:// cache, and reading them back
   (CacheReader.read of every array, BatchLoader with 2 readers over a FeatureDataset of every
   layer, CacheReader.read of one layer), the arrays opened before counting starts;
3. loader efficiency: BatchLoader (2 reader threads, batch 2) bytes/s over the raw-read ceiling of
   the same samples (bench_loader.Ceiling: the chunk files a sample needs read into a sample
   buffer, each once, plus the labels' zstd decode), both packings' ceilings and loaders
   interleaved round by round, each's best kept (goal >= 0.8); and the bytes a read of one layer
   takes from the files (Linux's /proc/self/io rchar) over that layer's own bytes, on a sample's
   first read in the process (the reader checks a raw chunk's crc32c once, reading all of it) and
   on later reads (goal <= 1.10);
4. writer throughput: CacheWriter.write_sample against numpy.tofile of the same bytes (as
   bench_writer: fresh caches each round, rounds interleaved, best kept), both packings with the
   direct chunk writer, and stride packs through zarr's array API (`chunk_writer` -> None): the
   rule is to prefer zarr's own path where it is within 20 % of the hand-written one.
"""

from __future__ import annotations

import argparse
import functools
import os
import shutil
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from benchmarks.bench_loader import Ceiling, interleaved, loader_epoch
from benchmarks.bench_writer import SHAPES as WRITER_SHAPES
from benchmarks.bench_writer import Shape, _cache, _tofile_all, _write_all
from diffseg.cache import CacheReader, CacheWriter, FeatureDataset, schema, store
from diffseg.cache.fastread import keep_freed_memory
from diffseg.cache.loader import BatchLoader
from diffseg.cache.synthetic import TINY

PACKINGS = ("layer", "stride")  # format 2's layout, format 3's default
DEMO = Shape(
    unet=TINY,
    layers=tuple(f"up{b}.{k}{j}" for b in (1, 2, 3) for k in ("res", "blk", "xattn") for j in (0, 1, 2)),
    save_steps=(60, 20, 1),
    res=64,
    branches=("uncond", "cond"),
    xattn_classes=19,
)
SHAPES = {**WRITER_SHAPES, "demo-like tiny @64": DEMO}
SUBSET = {"sd21 5step @256": "up2.res0", "tiny lite @128": "up2.res2", "demo-like tiny @64": "up2.res0"}
HASH = np.zeros(32, np.uint8)  # a sample_sha256 as extraction writes one (the value does not matter here)
BUCKET = "diffseg-bench"

# samples per section and shape: (read, write, S3: 0 leaves the shape out, else at least 2); rounds: (loader, writer)
FULL = {"sd21 5step @256": (16, 8, 3), "tiny lite @128": (320, 200, 4), "demo-like tiny @64": (320, 64, 4)}
QUICK = {"tiny lite @128": (24, 16, 0), "demo-like tiny @64": (24, 16, 2)}
ROUNDS = {False: (7, 5), True: (3, 2)}


def fill(path: str | Path, shape: Shape, n: int, packing: str) -> Callable[[int], None]:
    """Create an n-sample cache of `shape` at `path`; -> a function that writes sample i (the same
    features each time; with a sample_sha256, as extraction writes) through one CacheWriter."""
    feats, label = _cache(path, shape, n, packing)
    w = CacheWriter.open(path)

    def write(i: int) -> None:
        w.write_sample(i, feats, label, sample_hash=HASH)

    return write


def layers_of(r: CacheReader) -> list[str]:
    return list(r.record.layers)


# -- 1. files per sample ---------------------------------------------------------------------------
def sample_files(r: CacheReader, i: int) -> tuple[list[Path], list[Path]]:
    """(feature chunk files, other chunk files) that sample i owns: one per array chunked one sample
    per chunk (from the metadata: the files extraction writes, whether or not they exist now)."""
    root = store.local_path(r.path)
    feats: list[Path] = []
    other: list[Path] = []
    for name in r.array_names():
        a = r.zarr_array(name)
        if a.shape[:1] != (r.n,) or a.chunks != (1, *a.shape[1:]):
            continue  # ids, or an array every sample shares
        key = a.metadata.encode_chunk_key((i, *(0,) * (a.ndim - 1)))
        (feats if r.packing.stored_array(name) else other).append(root / name / key)
    return feats, other


def files_row(path: Path) -> dict:
    r = CacheReader(path)
    feats, other = sample_files(r, 0)
    sizes = [p.stat().st_size for i in r.complete_indices() for p in sample_files(r, i)[0]]
    return {"features": len(feats), "all": len(feats) + len(other), "sizes": sizes}


# -- 2. S3 requests -----------------------------------------------------------------------------
def s3_rows(shapes: dict[str, int]) -> dict | str:
    """{(shape, packing): {what: Counter per sample}}, or why it could not run."""
    from benchmarks._moto import MotoS3

    try:
        import s3fs  # type: ignore[import-untyped]  # noqa: F401  (zarr's FsspecStore needs it for s3://)

        server = MotoS3(BUCKET).start()
    except ImportError as err:  # moto[server] and s3fs are the `test` extra's
        return f"skipped: {err} (pip install -e '.[test]')"
    except OSError as err:
        return f"skipped: the moto S3 server could not start on 127.0.0.1: {err}"
    out = {}
    try:
        for shape_name, n in shapes.items():
            shape = SHAPES[shape_name]
            for packing in PACKINGS:
                url = f"s3://{BUCKET}/{shape_name.replace(' ', '-').replace('@', '')}-{packing}"
                write = fill(url, shape, n, packing)
                out[(shape_name, packing)] = s3_counts(server.requests, url, write, n, SUBSET[shape_name])
    finally:
        server.stop()
    return out


def s3_counts(log, url: str, write: Callable[[int], None], n: int, subset: str) -> dict[str, Counter]:
    """Requests per sample: writing (the first sample, which opens the arrays, apart from the later
    ones) and reading (the arrays opened before, BatchLoader's construction left out)."""

    def count(fn: Callable[[], object], per: int = 1) -> Counter:
        before = log.snapshot()
        fn()
        return Counter({k: v / per for k, v in log.since(before).items()})

    writes = [count(functools.partial(write, i)) for i in range(n)]
    counts = {"write, first": writes[0], "write": sum(writes[1:], Counter())}
    counts["write"] = Counter({k: v / (n - 1) for k, v in counts["write"].items()})
    r = CacheReader(url)
    names = r.feature_names() + [schema.LABELS]
    sub = schema.feature_name(r.branches[0], subset)
    for k in names:
        r.source(k)  # arrays opened (their zarr.json read) before counting
    counts["read all"] = count(lambda: [r.read(i, names) for i in range(n)], n)
    counts["read one layer"] = count(lambda: [r.read(i, [sub]) for i in range(n)], n)
    ds = FeatureDataset(url, r.branches, layers_of(r))
    for k in ds.layout():
        ds.reader.source(k)  # the dataset's reader opened and its arrays too, as above
    opening = count(lambda: BatchLoader(ds, [], device=torch.device("cpu"), readers=2).close())
    counts["BatchLoader all"] = count(loader_epoch(ds, readers=2)) - opening
    counts["BatchLoader all"] = Counter({k: v / n for k, v in counts["BatchLoader all"].items()})
    return counts


def show_counts(c: Counter) -> str:
    return ", ".join(f"{k} {v:.3g}" for k, v in sorted(c.items())) or "none"


# -- 3. loader efficiency and a layer subset's bytes ----------------------------------------------
def bytes_read() -> int | None:
    """Bytes this process has read through read() calls so far (Linux), else None."""
    try:
        with open("/proc/self/io") as f:
            for line in f:
                if line.startswith("rchar:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def subset_bytes(path: Path, layer: str) -> tuple[int, int | None, int | None]:
    """(the layer's own bytes, bytes read on each sample's first read, on a later read) for
    CacheReader.read of one layer of the first branch over every sample; a fresh reader."""
    r = CacheReader(path)
    name = schema.feature_name(r.branches[0], layer)
    r.source(name)  # opened before counting
    idx = r.complete_indices()
    own = int(np.prod(r.array_shape(name))) * 2 * len(idx)
    got = []
    for _ in range(2):
        before = bytes_read()
        for i in idx:
            r.read(i, [name])
        after = bytes_read()
        got.append(None if before is None or after is None else after - before)
    return own, got[0], got[1]


def loader_rows(paths: dict[str, Path], rounds: int) -> dict[str, dict]:
    """{packing: {"nbytes", "samples", "ceiling" s, "loader" s}}: both packings interleaved."""
    fns: dict[str, Callable[[], object]] = {}
    info: dict[str, dict[str, float]] = {}
    for packing, path in paths.items():
        r = CacheReader(path)
        ceiling = Ceiling(r)
        ds = FeatureDataset(path, r.branches, layers_of(r))
        t = ceiling.timers(f"{packing}/")
        fns |= {f"{packing}/raw": t[f"{packing}/raw"], f"{packing}/decode": t[f"{packing}/decode"]}
        fns[f"{packing}/loader"] = loader_epoch(ds, readers=2)
        info[packing] = {"nbytes": ceiling.nbytes, "samples": len(ceiling.idx)}
    best = interleaved(fns, rounds)
    for packing in paths:
        info[packing]["ceiling"] = best[f"{packing}/raw"] + best[f"{packing}/decode"]
        info[packing]["loader"] = best[f"{packing}/loader"]
    return info


# -- 4. writer ------------------------------------------------------------------------------------
WRITERS = {"layer": ("layer", True), "stride": ("stride", True), "stride, zarr API": ("stride", False)}


def writer_row(tmp: Path, shape_name: str, n: int, rounds: int) -> dict:
    """Best seconds of each writer and of tofile (fresh caches every round, rounds interleaved)."""
    times: dict[str, list[float]] = {k: [] for k in [*WRITERS, "tofile"]}
    nbytes = 0
    for r in range(rounds):
        for how in times:
            path = tmp / f"w-{r}-{how.replace(', ', '-').replace(' ', '')}"
            packing, direct = WRITERS.get(how, ("stride", True))
            feats, label = _cache(path, SHAPES[shape_name], n, packing)
            nbytes = sum(a.nbytes for a in feats.values()) * n
            if how == "tofile":
                times[how].append(_tofile_all(tmp / f"raw-{r}", n, feats))
                shutil.rmtree(tmp / f"raw-{r}")
            else:
                times[how].append(_write_all(path, n, feats, label, direct=direct))
            shutil.rmtree(path)
    return {"bytes": nbytes, "samples": n, "best": {k: min(v) for k, v in times.items()}}


# -- the report -----------------------------------------------------------------------------------
def load() -> str:
    return "load average " + ", ".join(f"{v:.2f}" for v in os.getloadavg()) + " (1, 5, 15 min)"


def report_files(rows: dict) -> list[str]:
    out = [
        "### 1. Files per sample",
        "",
        "| shape | packing | feature files | chunk files in all | bytes per feature file: mean | min | max |",
        "|---|---|---|---|---|---|---|",
    ]
    for (shape, packing), f in rows.items():
        s = f["sizes"]
        out.append(
            f"| {shape} | {packing} | {f['features']} | {f['all']} | {np.mean(s):,.0f} | {min(s):,} | {max(s):,} |"
        )
    return out


def report_s3(rows: dict | str) -> list[str]:
    out = ["### 2. S3 requests per sample (counted by moto's server)", ""]
    if isinstance(rows, str):
        return [*out, rows]
    whats = ["write, first", "write", "read all", "BatchLoader all", "read one layer"]
    out += [
        "| shape | packing | CacheWriter.write_sample, first sample | later samples | CacheReader.read, every "
        "array | BatchLoader (2 readers), every layer | CacheReader.read, one layer |",
        "|---|---|---|---|---|---|---|",
    ]
    for (shape, packing), c in rows.items():
        out.append(f"| {shape} | {packing} | " + " | ".join(show_counts(c[w]) for w in whats) + " |")
    return out


def report_loader(rows: dict, subsets: dict) -> list[str]:
    out = [
        "### 3. Loader efficiency (BatchLoader, 2 reader threads, batch 2; goal >= 0.8) and a layer's bytes",
        "",
        "Every layer of every branch, after a warm-up epoch (each sample's crc32c already checked); efficiency: "
        "BatchLoader bytes/s over the ceiling's (that packing's chunk files read raw, each once, + labels' zstd).",
        "",
        "| shape | packing | samples | MB/sample | ceiling MB/s | BatchLoader MB/s | efficiency | MB/s vs layer |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for shape, by_packing in rows.items():
        base = by_packing["layer"]["nbytes"] / by_packing["layer"]["loader"]
        for packing, x in by_packing.items():
            mbs = x["nbytes"] / x["loader"]
            out.append(
                f"| {shape} | {packing} | {x['samples']} | {x['nbytes'] / x['samples'] / 1e6:.3f} | "
                f"{x['nbytes'] / x['ceiling'] / 1e6:.0f} | {mbs / 1e6:.0f} | {x['ceiling'] / x['loader']:.2f} | "
                f"{mbs / base:.2f} |"
            )
    out += [
        "",
        "Bytes read from the files by CacheReader.read of one layer of the first branch, over that layer's "
        "own bytes (goal <= 1.10 on later reads; a sample's first read checks the whole chunk's crc32c):",
        "",
        "| shape | layer (its pack holds) | packing | layer's own bytes/sample | first read / own | later reads / own |",
        "|---|---|---|---|---|---|",
    ]
    ratio = lambda got, own: "n/a" if got is None else f"{got / own:.2f}"  # noqa: E731
    for (shape, packing), (layer, holds, own, first, later, n) in subsets.items():
        out.append(
            f"| {shape} | {layer} ({holds} layers) | {packing} | {own / n:,.0f} | {ratio(first, own)} | "
            f"{ratio(later, own)} |"
        )
    return out


def report_writer(rows: dict) -> list[str]:
    out = [
        "### 4. Writer throughput against numpy.tofile of the same bytes (ratio: tofile time / writer time)",
        "",
        "tofile writes one flat file per feature array (format 2's count, no folders), so fewer, larger pack "
        "files can beat it; the writer also writes labels (zstd), status and the crc32c of every chunk.",
        "",
        "| shape | samples | MB | tofile MB/s | layer | stride | stride, zarr API | stride: zarr API time / direct |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for shape, w in rows.items():
        b, mb = w["best"], w["bytes"] / 1e6
        cells = " | ".join(f"{b['tofile'] / b[k]:.2f} ({mb / b[k]:.0f} MB/s)" for k in WRITERS)
        out.append(
            f"| {shape} | {w['samples']} | {mb:.1f} | {mb / b['tofile']:.0f} | {cells} | "
            f"{b['stride, zarr API'] / b['stride']:.2f} |"
        )
    return out


def lap(took: dict[str, float], part: str, since: float) -> None:
    """Add the seconds since `since` to `took[part]`."""
    took[part] = took.get(part, 0.0) + time.perf_counter() - since


def local_sections(
    tmp: Path, sizes: dict, rounds: tuple[int, int], took: dict[str, float]
) -> tuple[dict, dict, dict, dict]:
    """Sections 1, 3 and 4 on local caches: (files, loaders, subsets, writers) rows; `took` gathers
    the seconds each part took."""
    files, loaders, subsets, writers = {}, {}, {}, {}
    for shape_name, (n_read, n_write, _) in sizes.items():
        t, paths = time.perf_counter(), {}
        for packing in PACKINGS:
            paths[packing] = tmp / f"{shape_name.replace(' ', '-').replace('@', '')}-{packing}"
            write = fill(paths[packing], SHAPES[shape_name], n_read, packing)
            for i in range(n_read):
                write(i)
            files[(shape_name, packing)] = files_row(paths[packing])
        lap(took, "building the read caches", t)
        t = time.perf_counter()
        loaders[shape_name] = loader_rows(paths, rounds[0])
        layer = SUBSET[shape_name]
        for packing, path in paths.items():
            r = CacheReader(path)
            holds = len(r.packing.packs[r.packing.slots[schema.feature_name(r.branches[0], layer)].pack].layers)
            subsets[(shape_name, packing)] = (layer, holds, *subset_bytes(path, layer), n_read)
            shutil.rmtree(path)
        lap(took, "loader", t)
        t = time.perf_counter()
        writers[shape_name] = writer_row(tmp, shape_name, n_write, rounds[1])
        lap(took, "writer", t)
    return files, loaders, subsets, writers


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="the tiny shapes only, fewer samples and rounds")
    ap.add_argument("--dir", help="where to build the caches (default: a temporary folder)")
    args = ap.parse_args()
    keep_freed_memory()  # as the commands that read caches do (cache/fastread.py)
    torch.set_num_threads(1)
    sizes = QUICK if args.quick else FULL
    took: dict[str, float] = {}
    lines = [f"Start: {load()}; {os.cpu_count()} CPUs. Shapes and samples (read, write, S3): {sizes}.", ""]
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        files, loaders, subsets, writers = local_sections(Path(tmp), sizes, ROUNDS[args.quick], took)
    t = time.perf_counter()
    s3 = s3_rows({k: v[2] for k, v in sizes.items() if v[2]})
    took["S3"] = time.perf_counter() - t
    lines += report_files(files) + [""] + report_s3(s3) + [""] + report_loader(loaders, subsets)
    lines += [""] + report_writer(writers)
    spent = ", ".join(f"{k} {v:.0f} s" for k, v in took.items())
    lines += ["", f"End: {load()}; {sum(took.values()):.0f} s ({spent})."]
    print("\n".join(lines))


if __name__ == "__main__":
    main()
