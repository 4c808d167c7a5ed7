"""Shared settings of the stage-two tests (the caches themselves come from diffseg.cache.synthetic)."""

from diffseg.cache.synthetic import unet_geometry

# Keywords of diffseg.stages.train.job.main for fast CPU test runs (light fusion, no workers).
FAST_TRAIN = dict(
    fusion="light", iters=2, warmup=0, lr=1e-3, eval_every=0, ckpt_every=1000, workers=0, device="cpu", log_every=1
)
# A small learnable cache: 32x32 block labels, features = noise (+ signal x the label), strides
# 32/16/8 -> 1x1, 2x2, 4x4 maps with 4, 4, 8 channels: the fastest set the fusion block takes.
SMALL = dict(
    resolution=(32, 32),
    unet=unet_geometry((4, 4, 4, 8)),
    layers=("up1.res2", "up2.res2", "up3.res2"),
    labels="blocks",
    features="label",
    block=8,
)

LEARNABLE_CLASSES = (0, 1, 2, 3)


def learnable_caches(root, n_train: int, n_eval: int):
    """(training cache, evaluation cache) under `root`: SMALL caches whose features carry the label
    (signal 4), the classes LEARNABLE_CLASSES, the evaluation one a Cityscapes-like val cache."""
    from diffseg.cache.synthetic import make_cache

    kw = dict(signal=4.0, classes=LEARNABLE_CLASSES, **SMALL)
    cache = make_cache(root / "gtav", n=n_train, **kw)
    ev = make_cache(
        root / "cs", n=n_eval, seed=1, kind="eval", split="val", dataset="cityscapes", branches=("uncond",), **kw
    )
    return cache, ev


# train.main keywords of the predict tests' tiny runs (one-step demo caches, three res layers).
PREDICT_TRAIN = dict(
    layers=("up1.res2", "up2.res2", "up3.res2"),
    iters=2,
    fusion="light",
    warmup=1,
    workers=0,
    device="cpu",
    eval_every=0,
)


def fail_writes(monkeypatch, folder, code: int, after: int = 0) -> list[str]:
    """Every file opened for writing under `folder` after the first `after` fails with OSError(code)
    (errno.ENOSPC: a full disk, errno.EROFS: a read-only mount), at the lowest call: open (builtins,
    io for pathlib) and os.open, which zarr, the chunk writer, the atomic writer and the lock files
    all go through.
    -> the paths whose opening failed (appended to as they fail); monkeypatch.undo() frees the disk."""
    import builtins
    import io
    import os

    real_open, real_os_open = builtins.open, os.open
    root, opened, failed = os.path.realpath(folder), [0], []

    def refuse(path) -> bool:
        if not os.path.realpath(os.fspath(path)).startswith(root + os.sep):
            return False
        opened[0] += 1
        if opened[0] <= after:
            return False
        failed.append(os.fspath(path))
        return True

    def fake_open(file, mode="r", *args, **kwargs):
        if isinstance(file, str | bytes | os.PathLike) and any(c in mode for c in "wax+") and refuse(file):
            raise OSError(code, os.strerror(code), os.fspath(file))
        return real_open(file, mode, *args, **kwargs)

    def fake_os_open(path, flags, *args, **kwargs):
        if flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT) and refuse(path):
            raise OSError(code, os.strerror(code), os.fspath(path))
        return real_os_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", fake_open)
    monkeypatch.setattr(io, "open", fake_open)
    monkeypatch.setattr(os, "open", fake_os_open)
    return failed


def by_hand(reader, name: str, i: int):
    """Sample i of array `name` read with plain zarr and the record's JSON alone (the cache format page's
    recipe): a feature array "<branch>/<layer>" of a raw cache is its slab of channels of the pack that
    holds it, at the running sum of the channels of the layers before it."""
    import zarr

    g = zarr.open_group(str(reader.path), mode="r")
    if name not in reader.feature_names():
        return g[name][i]
    attrs = g.attrs.asdict()
    branch, layer = name.split("/", 1)
    pack, layers = next((p, ls) for p, ls in attrs["packs"].items() if p.startswith(branch + "/") and layer in ls)
    offset = sum(attrs["layers"][k]["channels"] for k in layers[: layers.index(layer)])
    return g[pack][i][:, offset : offset + attrs["layers"][layer]["channels"]]
