"""The GPU check in one short run: `benchmarks/gpu.sh` (or `python -m benchmarks.bench_gpu`).

Sized to finish in under 8 minutes on one H100/H200 with `sd21-random` (SD 2.1's shapes, random
weights: no hub access needed) and the built-in tokenizer. Sections, each written to --out
(default benchmarks/gpu-results.md) as soon as it is measured, so a failure or a lost machine
keeps everything before it; a failed section is written as its one-line error and the others
still run (exit 1 at the end if any failed):

1. throughput: the bare U-Net against extraction, per dtype (float16, bfloat16) for the cond
   branch's K-batch (n + 1 prompt copies per call) at the `reference` preset and the uncond
   branch at `lite`, 512 px; GPU utilisation sampled (nvidia-smi) while it runs;
2. the cost of capturing cross-attention maps (`xattn` layers with `--uncond-prompt classes`)
   against the same trajectory without them;
3. peak GPU memory (`torch.cuda.max_memory_allocated`) of extraction for 512x512 training views
   and 1024x512 evaluation images at batch 1 and 8;
4. codec encode throughput (int8, pca; today's numpy encoders, after the device-to-host copy);
5. training from a `pca` cache extracted here: seconds per iteration and the data-wait share;
6. finiteness: every captured layer of both branches, per dtype, checked for inf/NaN;
7. attention backends: the bare U-Net per backend (PyTorch SDPA, xformers when usable).

Without a CUDA device it stops at once with one line (exit 1). `--device cpu --dry` runs every
section at toy sizes on the CPU (`tiny`, 64 px) into benchmarks/gpu-results-dry.md (ignored by
git, so a dry run never overwrites measured GPU numbers): a check that the script works, not a
measurement; `.ci/run` runs it.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import gc
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

HERE = Path(__file__).resolve().parent


@dataclasses.dataclass(frozen=True)
class Sizes:
    model: str
    size: int  # training view side (px)
    eval_size: tuple[int, int]  # evaluation image (W, H)
    images: int  # timed images per measurement
    batches: tuple[int, ...]  # image batches for the memory section
    dtypes: tuple[str, ...]
    cond_classes: int  # classes present in the cond label (K = n + 1 prompt copies)
    train_samples: int
    train_iters: int
    calls: int  # U-Net calls per backend timing
    long_preset: str  # the cond branch's and the finiteness check's preset (reference on a GPU)


FULL = Sizes("sd21-random", 512, (1024, 512), 3, (1, 8), ("float16", "bfloat16"), 10, 16, 30, 20, "reference")
DRY = Sizes("tiny", 64, (128, 64), 1, (1, 2), ("float32",), 3, 4, 3, 2, "5step")


def fail_without_cuda(device: str) -> None:
    import torch

    if device == "cuda" and not torch.cuda.is_available():
        print(
            "error: no CUDA device (torch.cuda.is_available() is False): run this on a GPU machine, "
            "or `--device cpu --dry` to check the script",
            file=sys.stderr,
        )
        sys.exit(1)


def _sync(device: str) -> None:
    from benchmarks._cuda import sync

    sync(device)


@functools.cache
def _models(sz: Sizes, device: str, dtype: str):
    """The frozen models, built once per dtype for the whole run (building sd21-random takes tens
    of seconds); `peak_memory` drops them first so that its peaks count one model."""
    import torch

    from diffseg.pipeline.models import load_models

    return load_models(sz.model, device=device, dtype=getattr(torch, dtype))


def _inputs(sz: Sizes, size: tuple[int, int], n: int):
    """n seeded random images [n, H, W, 3] and striped labels with sz.cond_classes classes."""
    import numpy as np

    from benchmarks.bench_train import synthetic_label

    w, h = size
    images = np.random.default_rng(0).integers(0, 255, (n, h, w, 3), dtype=np.uint8)
    label = synthetic_label(max(w, h), sz.cond_classes)[:h, :w]
    return images, np.broadcast_to(label, (n, h, w)).copy()


def _timed_branch(models, cfg, branch: str, images, labels, uncond_prompt: str = "empty") -> dict:
    """Images/s of extract_tensors for one branch (after a warm-up image) and the same U-Net
    calls run bare: efficiency = bare / extraction."""
    from benchmarks.bench_extract import UNetCallLog, bare_unet_seconds
    from diffseg.pipeline.extractor import FeatureExtractor

    ext = FeatureExtractor(models, cfg, uncond_prompt=uncond_prompt)
    kw = (lambda i: {"labels": labels[i : i + 1]}) if branch == "cond" else (lambda i: {})
    ext.extract_tensors(branch, images[:1], ["warm"], grad_mode="inference", **kw(0))
    log = UNetCallLog(models.unet)
    try:
        _sync(str(models.device))
        t0 = time.perf_counter()
        for i in range(len(images)):
            ext.extract_tensors(branch, images[i : i + 1], [f"s{i}"], grad_mode="inference", **kw(i))
        _sync(str(models.device))
        wall = time.perf_counter() - t0
    finally:
        log.close()
    bare = bare_unet_seconds(models, log.calls)
    return {
        "img_s": len(images) / wall,
        "s_img": wall / len(images),
        "efficiency": bare / wall,
        "calls": len(log.calls),
    }


class GpuSampler:
    """GPU utilisation every 200 ms from `nvidia-smi` while the block runs (None without one)."""

    def __init__(self, device: str):
        self.samples: list[float] = []
        self._proc: subprocess.Popen | None = None
        self._thread: threading.Thread | None = None
        self.why = ""
        if device != "cuda":
            self.why = "not sampled (CPU)"
        elif shutil.which("nvidia-smi") is None:
            self.why = "not sampled (no nvidia-smi on PATH)"

    def __enter__(self) -> GpuSampler:
        if not self.why:
            cmd = ["nvidia-smi", "--query-gpu=utilization.gpu", "--format=csv,noheader,nounits", "-lms", "200"]
            self._proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
            self._thread = threading.Thread(target=self._read, daemon=True)
            self._thread.start()
        return self

    def _read(self) -> None:
        assert self._proc is not None and self._proc.stdout is not None
        for line in self._proc.stdout:
            if line.strip().isdigit():
                self.samples.append(float(line.split()[0]))

    def __exit__(self, *exc) -> None:
        if self._proc is not None:
            self._proc.terminate()
            self._proc.wait(timeout=10)
        if self._thread is not None:
            self._thread.join(timeout=10)

    def summary(self) -> str:
        if self.why:
            return self.why
        if not self.samples:
            return "nvidia-smi printed no samples"
        s = self.samples
        return f"mean {sum(s) / len(s):.0f} %, max {max(s):.0f} % over {len(s)} samples"


def throughput(sz: Sizes, device: str) -> str:
    from diffseg.pipeline.config import preset

    rows = [
        f"{sz.model}, {sz.size} px, {sz.images} images each after one warm-up; cond label with {sz.cond_classes} "
        f"classes (K = {sz.cond_classes + 1} prompt copies per U-Net call)",
        "",
        "| dtype | branch @ preset | images/s | s/image | U-Net calls | bare U-Net / extraction | GPU utilisation |",
        "|---|---|---:|---:|---:|---:|---|",
    ]
    images, labels = _inputs(sz, (sz.size, sz.size), sz.images)
    for dtype in sz.dtypes:
        models = _models(sz, device, dtype)
        for branch, name in (("cond", sz.long_preset), ("uncond", "lite")):
            with GpuSampler(device) as gpu:
                r = _timed_branch(models, preset(name), branch, images, labels)
            rows.append(
                f"| {dtype} | {branch} @ {name} | {r['img_s']:.3f} | {r['s_img']:.2f} | {r['calls']} | "
                f"{r['efficiency']:.2f} | {gpu.summary()} |"
            )
    return "\n".join(rows)


def xattn_cost(sz: Sizes, device: str) -> str:
    from diffseg.pipeline.config import resolve

    models = _models(sz, device, sz.dtypes[0])
    images, labels = _inputs(sz, (sz.size, sz.size), sz.images)
    rows = [
        f"{sz.model}, {sz.dtypes[0]}, {sz.size} px, lite steps, uncond branch with the class-list prompt",
        "",
        "| layers | s/image | vs without xattn |",
        "|---|---:|---:|",
    ]
    base = None
    for kinds in (("res",), ("res", "xattn")):
        r = _timed_branch(models, resolve("lite", kinds=kinds), "uncond", images, labels, uncond_prompt="classes")
        base = base or r["s_img"]
        rows.append(f"| {'+'.join(kinds)} | {r['s_img']:.2f} | {r['s_img'] / base:.2f} |")
    return "\n".join(rows)


def peak_memory(sz: Sizes, device: str) -> str:
    import torch

    from diffseg.pipeline.config import preset
    from diffseg.pipeline.extractor import FeatureExtractor

    cuda = device == "cuda"
    _models.cache_clear()
    gc.collect()
    models = _models(sz, device, sz.dtypes[0])
    rows = [
        f"{sz.model}, {sz.dtypes[0]}, lite preset, uncond branch (images per U-Net call = batch)",
        "",
        "| input | batch | peak GiB |",
        "|---|---:|---:|",
    ]
    for label, size in (("training view", (sz.size, sz.size)), ("evaluation image", sz.eval_size)):
        for batch in sz.batches:
            images, _ = _inputs(sz, size, batch)
            ext = FeatureExtractor(models, preset("lite"))
            if cuda:
                torch.cuda.empty_cache()
                torch.cuda.reset_peak_memory_stats()
            try:
                ext.extract_tensors("uncond", images, [f"s{i}" for i in range(batch)], grad_mode="inference")
                peak = f"{torch.cuda.max_memory_allocated() / 2**30:.2f}" if cuda else "n/a (CPU)"
            except torch.cuda.OutOfMemoryError:
                peak = "out of memory"
            rows.append(f"| {label} {size[0]}x{size[1]} | {batch} | {peak} |")
    return "\n".join(rows)


def codec_encode(sz: Sizes, device: str) -> str:
    import numpy as np

    from diffseg.cache.codecs import PcaFit, parse_codec

    # one SD 2.1 up-block-1 res layer at 512 px: 1280 channels at 1/32, 9 saved steps (reference)
    side = sz.size // 32 if sz.model != "tiny" else 4
    channels = 1280 if sz.model != "tiny" else 32
    x = np.random.default_rng(0).standard_normal((9, channels, side, side)).astype(np.float16)
    fit = PcaFit(channels)
    fit.add(x)
    rows = [
        f"numpy encoders on the host (after the device-to-host copy), one [9, {channels}, {side}, {side}] float16 layer",
        "",
        "| codec | MB/s of float16 input |",
        "|---|---:|",
    ]
    for spec in ("int8", "pca:k=32"):
        codec = parse_codec(spec)
        shared = fit.basis(codec.k(channels)) if codec.name == "pca" else None
        codec.encode(x, shared)
        reps = 5
        t0 = time.perf_counter()
        for _ in range(reps):
            codec.encode(x, shared)
        rate = reps * x.nbytes / (time.perf_counter() - t0) / 1e6
        rows.append(f"| {spec} | {rate:.0f} |")
    return "\n".join(rows)


def _diffseg(*args: str) -> None:
    """Run one diffseg command in a child interpreter; a failure raises with its last stderr line."""
    proc = subprocess.run([sys.executable, "-m", "diffseg", *args], capture_output=True, text=True)
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["(no output)"])[-1]
        raise RuntimeError(f"diffseg {' '.join(args[:2])} failed ({proc.returncode}): {last}")


def pca_training(sz: Sizes, device: str) -> str:
    from benchmarks.bench_train import time_cached

    with tempfile.TemporaryDirectory() as tmp:
        cache, run = f"{tmp}/cache", f"{tmp}/run"
        res = f"{sz.size}x{sz.size}"
        calib = max(2, sz.train_samples // 4)
        t0 = time.perf_counter()
        _diffseg(
            "extract", "--dataset", "demo", "--model", sz.model, "--resolution", res, "--scale", res,
            "--limit", str(sz.train_samples), "--codec", f"pca:k=32,calib={calib}", "--device", device, "--out", cache,
        )  # fmt: skip
        extract_s = time.perf_counter() - t0
        t = time_cached(Path(cache), Path(run), sz.train_iters, workers=2, device=device)
    return "\n".join(
        [
            f"{sz.model}, demo train split, {sz.train_samples} samples at {res}, lite, both branches, codec pca:k=32",
            "",
            "| extraction s/sample (start-up included) | train s/iter (median) | data wait (median s) | data-wait share |",
            "|---:|---:|---:|---:|",
            f"| {extract_s / sz.train_samples:.2f} | {t['iter_s']:.3f} | {t['data_wait_s']:.4f} | "
            f"{100 * t['data_wait_share']:.1f} % |",
        ]
    )


def finiteness(sz: Sizes, device: str) -> str:
    import torch

    from diffseg.pipeline.config import resolve
    from diffseg.pipeline.extractor import FeatureExtractor

    images, labels = _inputs(sz, (sz.size, sz.size), 1)
    cfg = resolve(sz.long_preset, kinds=("res", "blk", "xattn"))
    rows = [
        f"{sz.model}, {sz.size} px, {sz.long_preset} steps, res + blk + xattn layers ({len(cfg.layers)}), "
        "one image per branch",
        "",
        "| dtype | branch | layers | non-finite values | layers with any |",
        "|---|---|---:|---:|---|",
    ]
    bad_any = False
    for dtype in sz.dtypes:
        models = _models(sz, device, dtype)
        ext = FeatureExtractor(models, cfg, uncond_prompt="classes")
        for branch in ("uncond", "cond"):
            kw = {"labels": labels} if branch == "cond" else {}
            out = ext.extract_tensors(branch, images, ["s0"], grad_mode="inference", **kw)
            bad = {name: int((~torch.isfinite(v)).sum()) for name, v in out.items()}
            named = [n for n, c in bad.items() if c]
            bad_any |= bool(named)
            rows.append(f"| {dtype} | {branch} | {len(out)} | {sum(bad.values())} | {', '.join(named) or 'none'} |")
        del models
    if bad_any:
        rows.append("\n**Non-finite features found** (see the layers above).")
    return "\n".join(rows)


def attention_backends(sz: Sizes, device: str) -> str:
    """Bare U-Net forward per attention backend (CUDA-event timed on a GPU)."""
    import torch
    from diffusers.models.attention_processor import AttnProcessor2_0

    from diffseg.pipeline.attention import xformers_status

    m = _models(sz, device, sz.dtypes[0])
    latent = sz.size // 8
    x = torch.randn(1, 4, latent, latent, device=device, dtype=m.dtype)
    emb = torch.randn(1, 77, m.unet.config["cross_attention_dim"], device=device, dtype=m.dtype)
    t = torch.tensor(500, device=device)
    usable, why = xformers_status(device)
    backends = {"sdpa": lambda: m.unet.set_attn_processor(AttnProcessor2_0())}
    if usable:
        backends["xformers"] = m.unet.enable_xformers_memory_efficient_attention
    rows = [f"xformers: {why}", "", "| backend | ms per U-Net call (batch 1) | vs sdpa |", "|---|---|---|"]
    base = None
    for name, install in backends.items():
        install()
        with torch.inference_mode():
            for _ in range(2):  # warm-up: kernels, autotuning
                m.unet(x, t, encoder_hidden_states=emb)
            _sync(device)
            t0 = time.perf_counter()
            for _ in range(sz.calls):
                m.unet(x, t, encoder_hidden_states=emb)
            _sync(device)
            ms = (time.perf_counter() - t0) * 1000 / sz.calls
        base = base or ms
        rows.append(f"| {name} | {ms:.2f} | {ms / base:.2f} |")
    return "\n".join(rows)


SECTIONS: tuple[tuple[str, Callable[[Sizes, str], str]], ...] = (
    ("Throughput: bare U-Net against extraction", throughput),
    ("Cross-attention capture cost", xattn_cost),
    ("Peak GPU memory of extraction", peak_memory),
    ("Codec encode throughput", codec_encode),
    ("Training from a pca cache", pca_training),
    ("Finiteness of every captured layer", finiteness),
    ("Attention backends", attention_backends),
)


def header(device: str, dry: bool) -> str:
    import torch

    gpu = torch.cuda.get_device_name(0) if device == "cuda" else "none (CPU check)"
    title = "# diffseg GPU check" + (" (dry run: toy sizes on the CPU, not a measurement)" if dry else "")
    return (
        f"{title}\n\nGenerated by `bash benchmarks/gpu.sh{' --device cpu --dry' if dry else ''}`. "
        f"Machine: {platform.node()}, GPU: {gpu}, CUDA {torch.version.cuda or '-'}, torch {torch.__version__}, "
        f"{len(os.sched_getaffinity(0))} CPU cores. Date: {time.strftime('%Y-%m-%d %H:%M')}."
    )


def run(sz: Sizes, device: str, out: Path, dry: bool, only: tuple[str, ...] = ()) -> int:
    """Run the sections in order, rewriting `out` after each; -> the number of failed sections."""
    parts = [header(device, dry)]
    failed = 0
    for title, fn in SECTIONS:
        if only and fn.__name__ not in only:
            continue
        print(f"== {title}", file=sys.stderr, flush=True)
        t0 = time.perf_counter()
        try:
            body = fn(sz, device)
        except Exception as err:  # recorded in the results file and counted in the exit status
            failed += 1
            body = f"FAILED: {type(err).__name__}: {' '.join(str(err).split())[:300]}"
            print(body, file=sys.stderr, flush=True)
        parts.append(f"## {title} ({time.perf_counter() - t0:.0f} s)\n\n{body}")
        print(parts[-1] + "\n", flush=True)
        from diffseg.core.atomic import atomic_write

        atomic_write(out, "\n\n".join(parts) + "\n")
    return failed


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cuda", choices=("cuda", "cpu"))
    ap.add_argument("--dry", action="store_true", help="toy sizes (tiny model): check the script, measure nothing")
    ap.add_argument("--out", help="default benchmarks/gpu-results.md (--dry: benchmarks/gpu-results-dry.md)")
    ap.add_argument("--only", default="", help="comma-separated section functions, e.g. throughput,finiteness")
    args = ap.parse_args()
    from diffseg.cache.fastread import keep_freed_memory

    keep_freed_memory()  # as the commands that read caches do (cache/fastread.py)
    fail_without_cuda(args.device)
    only = tuple(s for s in args.only.split(",") if s)
    out = Path(args.out or HERE / ("gpu-results-dry.md" if args.dry else "gpu-results.md"))
    failed = run(DRY if args.dry else FULL, args.device, out, args.dry, only)
    print(f"wrote {out}" + (f" ({failed} section(s) failed)" if failed else ""), file=sys.stderr)
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
