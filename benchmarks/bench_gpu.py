"""The GPU benchmarks in one short run: `benchmarks/gpu.sh` (or `python -m benchmarks.bench_gpu`).

On a CUDA machine, in a few minutes, with `sd21-random` (SD 2.1's shapes, random weights):

1. attention backends: the bare U-Net forward in float16 at 512 px, PyTorch SDPA vs
   xformers (when importable and its kernels run), timed with CUDA events;
2. extraction efficiency: `extract` of a few demo images (float16 compute, the backend
   diffseg picks) against the bare U-Net calls it made (benchmarks/bench_extract.py);
3. training: seconds per cached iteration and the data-wait share (reference fusion, both
   branches, bf16/fp16 autocast, reader threads into pinned buffers), next to the online
   iteration the reference pays (benchmarks/bench_train.py);
4. the loader: BatchLoader with 0 and 2 readers into pinned buffers and on to the GPU,
   against a raw read of the same bytes (benchmarks/bench_loader.py), SD 2.1 shapes.

Writes Markdown to --out (default benchmarks/gpu-results.md) and prints it. Without a CUDA
device it stops at once with one line (exit 1). `--device cpu --dry` runs every step at toy
sizes on the CPU (tiny model): a check that the script works, not a measurement.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def fail_without_cuda(device: str) -> None:
    import torch

    if device == "cuda" and not torch.cuda.is_available():
        print(
            "error: no CUDA device (torch.cuda.is_available() is False): run this on a GPU machine, "
            "or `--device cpu --dry` to check the script",
            file=sys.stderr,
        )
        sys.exit(1)


def attention_backends(model: str, size: int, device: str, calls: int) -> str:
    """Bare U-Net forward (float16 on CUDA) per attention backend, CUDA-event timed."""
    import torch
    from diffusers.models.attention_processor import AttnProcessor2_0

    from diffseg.pipeline.attention import xformers_status
    from diffseg.pipeline.models import load_models

    cuda = device == "cuda"
    m = load_models(model, device=device, dtype=torch.float16 if cuda else torch.float32)
    latent = size // 8
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
            if cuda:
                start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                start.record()
                for _ in range(calls):
                    m.unet(x, t, encoder_hidden_states=emb)
                end.record()
                torch.cuda.synchronize()
                ms = start.elapsed_time(end) / calls
            else:
                t0 = time.perf_counter()
                for _ in range(calls):
                    m.unet(x, t, encoder_hidden_states=emb)
                ms = (time.perf_counter() - t0) * 1000 / calls
        base = base or ms
        rows.append(f"| {name} | {ms:.2f} | {ms / base:.2f} |")
    return "\n".join(rows)


def extraction(model: str, size: int, images: int, device: str) -> str:
    from benchmarks import bench_extract

    r = bench_extract.run(model=model, size=size, preset="5step", images=images, device=device)
    return bench_extract.markdown(r)


def training(model: str, size: int, iters: int, device: str, presets: tuple[str, ...]) -> str:
    from benchmarks import bench_train

    with contextlib.redirect_stderr(io.StringIO()):  # its per-preset JSON progress lines
        res = bench_train.run(model=model, size=size, iters=iters, workers=2, device=device, presets=presets)
    return bench_train._table(res)


def loader(samples: int, size: int, model: str, device: str) -> str:
    from benchmarks import bench_loader

    out = io.StringIO()
    with tempfile.TemporaryDirectory() as tmp, contextlib.redirect_stdout(out):
        path = Path(tmp) / "cache"
        layers = bench_loader.layer_names(("res", "blk"), (0, 1, 2))
        unet = "sd21" if model != "tiny" else "tiny"
        bench_loader.build(path, samples, unet, layers, 5, (size, size))
        bench_loader.measure(path, f"{unet} 5step @{size}", device=device)
    return "```\n" + out.getvalue().strip() + "\n```"


def header(device: str) -> str:
    import torch

    gpu = torch.cuda.get_device_name(0) if device == "cuda" else "none (CPU check)"
    cuda = torch.version.cuda or "-"
    return (
        f"Machine: {platform.node()}, GPU: {gpu}, CUDA {cuda}, torch {torch.__version__}, "
        f"{len(os.sched_getaffinity(0))} CPU cores. Date: {time.strftime('%Y-%m-%d %H:%M')}."
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cuda", choices=("cuda", "cpu"))
    ap.add_argument("--dry", action="store_true", help="toy sizes (tiny model): check the script, measure nothing")
    ap.add_argument("--out", default=str(HERE / "gpu-results.md"))
    args = ap.parse_args()
    from diffseg.cache.fastread import keep_freed_memory

    keep_freed_memory()  # as the commands that read caches do (cache/fastread.py)
    fail_without_cuda(args.device)
    if args.dry:
        model, size, images, iters, samples, calls = "tiny", 128, 1, 2, 2, 2
        presets: tuple[str, ...] = ("lite",)
    else:
        model, size, images, iters, samples, calls = "sd21-random", 512, 4, 20, 16, 20
        presets = ("reference", "5step", "lite")
    sections = [("Attention backends", lambda: attention_backends(model, size, args.device, calls))]
    sections += [("Extraction efficiency (5step)", lambda: extraction(model, size, images, args.device))]
    sections += [("Training from the cache", lambda: training(model, size, iters, args.device, presets))]
    sections += [("Loader into pinned memory and on to the device", lambda: loader(samples, 256, model, args.device))]
    parts = [f"# diffseg GPU benchmarks{' (dry run: toy sizes on CPU)' if args.dry else ''}\n\n{header(args.device)}"]
    for title, fn in sections:
        print(f"== {title}", file=sys.stderr, flush=True)
        t0 = time.perf_counter()
        body = fn()
        parts.append(f"## {title} ({time.perf_counter() - t0:.0f} s)\n\n{body}")
        print(parts[-1] + "\n", flush=True)
    Path(args.out).write_text("\n\n".join(parts) + "\n")
    print(f"wrote {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
