"""`python -m benchmarks`: run the whole performance suite and write benchmarks/results.md.

Each benchmark runs in its own interpreter (so one's memory or threads never colour
another's) and prints Markdown with ratios measured side by side in that one run; this
runner adds the machine it ran on and gathers the sections. `--quick` keeps to the tiny
model (a smoke run of the suite, minutes); the full suite uses sd21-random where the
issues set their goals (tens of minutes on a 2-core CPU).
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def suite(quick: bool) -> list[tuple[str, list[str]]]:
    big = (
        []
        if quick
        else [
            (
                "Extraction efficiency, sd21-random, 256 px, 5step, 2 images",
                [
                    "bench_extract",
                    "--model",
                    "sd21-random",
                    "--size",
                    "256",
                    "--preset",
                    "5step",
                    "--images",
                    "2",
                    "--threads",
                    "1",
                    "--batch",
                    "2",
                    "--rounds",
                    "1",
                ],
            ),
            (
                "Ablation cost and data wait, sd21-random, 256 px",
                ["bench_train", "--model", "sd21-random", "--size", "256", "--presets", "reference,5step,lite"],
            ),
            (
                "The premise: mini vs tiny vs pixels features, demo main-run recipe, 3 seeds",
                ["bench_premise", "--seeds", "0,1,2"],
            ),
            (
                "Demo mIoU per feature codec, paired seeds",
                ["bench_codec_miou", "--seeds", "0,1,2", "--json", "benchmarks/codec_miou.json"],
            ),
        ]
    )
    return [
        *big,
        (
            "Extraction efficiency, tiny, 128 px, 5step, 32 images",
            [
                "bench_extract",
                "--model",
                "tiny",
                "--size",
                "128",
                "--preset",
                "5step",
                "--images",
                "32",
                "--split",
                "train",
                "--branches",
                "uncond",
                "--threads",
                "1",
            ],
        ),
        ("Writer overhead", ["bench_writer"]),
        ("Loader efficiency", ["bench_loader", "--samples", "4" if quick else "16"]),
        ("Feature codecs", ["bench_codec"]),
        ("Peak memory, 8 vs 64 samples (demo dataset, tiny)", ["bench_memory"]),
        (
            "Contention: idle vs one busy process, old vs new thread settings",
            ["bench_contention", "--images", "4" if quick else "32", "--iters", "4" if quick else "60"],
        ),
    ]


def machine() -> str:
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none"
    return f"{cpu}, {os.cpu_count()} cores, GPU: {gpu}; Python {platform.python_version()}, torch {torch.__version__}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="tiny model only (a smoke run of the suite)")
    ap.add_argument("--out", default=str(HERE / "results.md"), help="Markdown file to write")
    args = ap.parse_args()
    sections = [
        f"# diffseg benchmark results\n\nMachine: {machine()}. "
        f"Date: {time.strftime('%Y-%m-%d')}. Suite: {'quick' if args.quick else 'full'}.\n"
    ]
    failed = []
    for title, argv in suite(args.quick):
        print(f"\n== {title}", flush=True)
        t0 = time.perf_counter()
        proc = subprocess.run(
            [sys.executable, "-m", f"benchmarks.{argv[0]}", *argv[1:]], cwd=HERE.parent, capture_output=True, text=True
        )
        took = time.perf_counter() - t0
        print(proc.stdout, flush=True)
        if proc.returncode != 0:
            print(proc.stderr[-3000:], file=sys.stderr)
            failed.append(title)
            body = f"FAILED (exit {proc.returncode}); see the console output."
        else:
            body = proc.stdout.strip()
        sections.append(f"## {title}\n\n`python -m benchmarks.{' '.join(argv)}` ({took:.0f} s)\n\n{body}\n")
    Path(args.out).write_text("\n".join(sections))
    print(f"wrote {args.out}")
    if failed:
        sys.exit(f"benchmarks failed: {', '.join(failed)}")


if __name__ == "__main__":
    main()
