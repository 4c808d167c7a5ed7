"""Bytes per sample, the dry-run report and the free-disk check of stage one (docs/design/architecture.md:
"--dry-run prints bytes per sample, the total, and the free disk space, and extraction
refuses to start when the disk cannot hold it").

Layer geometry comes from the U-Net config alone (core/layers.py `layer_specs`), so a dry run
of SD 2.1 needs no weights.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from diffseg.core import location
from diffseg.core.errors import DiffsegError
from diffseg.core.layers import LayerSpec


def feature_bytes(spec: LayerSpec, n_steps: int) -> int:
    """float16 bytes of one sample of one layer: S * C * h * w * 2."""
    h, w = spec.size
    return n_steps * spec.channels * h * w * 2


def sample_bytes(plan, specs: dict[str, LayerSpec], orig_max_hw=None) -> dict:
    """Bytes of one sample before lossless compression, with the plan's feature codec (bitround at
    its upper bound, raw): per branch and layer, labels, total."""
    from diffseg.cache.codecs import resolve

    n_steps = len(plan.trajectory.save_steps)
    codecs = resolve(plan.codec, [f"{b}/{n}" for b, n in plan.array_names()])
    per = {
        b: {
            n: codecs[f"{b}/{n}"].stored_bytes((n_steps, specs[n].channels, *specs[n].size))
            for n in plan.branch_layers(b)
        }
        for b in plan.branches
    }
    labels = plan.resolution[0] * plan.resolution[1]
    orig = 0 if orig_max_hw is None else orig_max_hw[0] * orig_max_hw[1] + 8
    total = sum(sum(d.values()) for d in per.values()) + labels + orig + 1  # + status byte
    return {"branches": per, "labels": labels, "orig_labels": orig, "total": total}


PRICED = ("raw", "bitround", "int8", "pca")  # the dry run prices each with its defaults, and the plan's


def codec_prices(plan, specs: dict[str, LayerSpec]) -> dict[str, int]:
    """{codec spec: feature bytes of one sample, stored} for each codec and the plan's own spec.
    bitround's lossless stage depends on the values: it is priced at its upper bound (raw)."""
    from diffseg.cache.codecs import normalize_spec, resolve

    S = len(plan.trajectory.save_steps)
    names = {f"{b}/{n}": (S, specs[n].channels, *specs[n].size) for b, n in plan.array_names()}
    out = {}
    for spec in dict.fromkeys([*(normalize_spec(c) for c in PRICED), plan.codec]):
        out[spec] = sum(c.stored_bytes(names[k]) for k, c in resolve(spec, names).items())
    return out


def price_lines(prices: dict[str, int], n_samples: int) -> list[str]:
    """One line per codec: feature bytes per sample, ratio to raw, total for the samples."""
    raw = prices["raw"]
    lines = [f"feature codecs ({n_samples} samples; extract --codec SPEC; bitround at most, zstd saves more):"]
    for spec, b in prices.items():
        lines.append(f"  {spec:<44} {human(b):>11} per sample  {raw / max(b, 1):5.2f}x  total {human(b * n_samples)}")
    return lines


def human(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.2f} {unit}"
        n /= 1024
    raise AssertionError


def existing_parent(path: str | Path) -> Path:
    """The nearest folder that exists (where the cache will be created)."""
    p = location.local_path(path).absolute()
    while not p.exists():
        p = p.parent
    return p


def free_bytes(out: str | Path) -> int | None:
    """Free disk where the cache goes; None on an object store, which reports no free space
    (a bucket quota, if any, is not visible through the S3/GCS APIs)."""
    if location.is_url(out):
        return None
    return shutil.disk_usage(existing_parent(out)).free


def free_line(out: str | Path, free: int | None) -> str:
    if free is None:
        return (
            f"free space at {out}: unknown (an object store reports no free space or quota): not checked; "
            "a full bucket fails the run with one line, and the rerun resumes"
        )
    return f"free disk at {existing_parent(out)}: {free} bytes ({human(free)})"


def check_disk(out: str | Path, per_sample: int, n_remaining: int) -> None:
    """Refuse to start when the free disk at `out` cannot hold the remaining samples (local only)."""
    need = per_sample * n_remaining
    free = free_bytes(out)
    if free is None:
        print(free_line(out, free))
        return
    if need > free:
        raise DiffsegError(
            f"not enough disk for {out}: {n_remaining} samples x {per_sample} bytes = {need} bytes "
            f"({human(need)}) needed, {free} bytes ({human(free)}) free at {existing_parent(out)}"
        )


def report_lines(
    plan, specs: dict[str, LayerSpec], sizes: dict, n_samples: int, n_remaining: int, free: int | None
) -> list[str]:
    """The dry-run / start report: per branch and layer, per sample, total, free disk."""
    S = len(plan.trajectory.save_steps)
    lines = [
        f"cache {plan.out}: {n_samples} samples ({plan.kind}, {plan.resolution[0]}x{plan.resolution[1]}, "
        f"{S} saved steps, branches {','.join(plan.branches)})"
    ]
    for b, layers in sizes["branches"].items():
        lines.append(f"  {b}: {human(sum(layers.values()))} per sample")
        for name, nbytes in layers.items():
            sp = specs[name]
            lines.append(
                f"    {name:<12} [{S}, {sp.channels}, {sp.size[0]}, {sp.size[1]}] "
                f"stride {sp.stride:>2}  {human(nbytes)}"
            )
    lines.append(
        f"  labels: {human(sizes['labels'])} per sample"
        + (f", orig_labels: {human(sizes['orig_labels'])}" if sizes["orig_labels"] else "")
    )
    total = sizes["total"] * n_samples
    lines.append(f"bytes per sample: {sizes['total']} ({human(sizes['total'])})")
    lines.append(
        f"total: {total} bytes ({human(total)}) for {n_samples} samples; remaining "
        f"{n_remaining} samples: {sizes['total'] * n_remaining} bytes "
        f"({human(sizes['total'] * n_remaining)})"
    )
    lines.append(free_line(plan.out, free))
    return lines
