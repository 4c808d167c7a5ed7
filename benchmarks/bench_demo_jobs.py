"""`diffseg demo` with its jobs one after another (`--jobs 1`) and side by side (the default), in one run.

Why: the demo runs its extractions and trainings as jobs in worker processes (diffseg.core.jobs),
one single-threaded worker per core, because a small U-Net or head keeps about one core busy
whatever torch's thread count. This measures what that buys on this machine, both arms in one
invocation, one after the other (so the same load conditions as far as the machine allows), and
says whether the two reports agree.

Arms: `--jobs 1` (every step in one process, torch threads = the machine's cores, as before jobs
existed) and `--jobs N` (default: the machine's cores). Printed: each arm's wall time (the demo's
own `total`), the ratio, the load average before and after, and the largest difference between
the arms' mIoU numbers (main runs and Table IV cells). `--jobs 1` runs at another torch thread
count than the workers, so float reductions may differ in the last bits; the numbers are compared,
not asserted.

    python -m benchmarks.bench_demo_jobs --size small     # about 4 minutes
    python -m benchmarks.bench_demo_jobs                  # the full demo twice: about 30 minutes idle
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path


def _numbers(results: dict) -> dict[str, float]:
    """Every mIoU of a demo's results.json (main runs; each Table IV cell's seeds), in points, by key."""
    out = {}
    for m, r in results["models"].items():
        for t, v in r["miou"].items():
            out[f"main run {m} {t}"] = v
    for name, cell in results["cells"].items():
        for t, per in cell["targets"].items():
            for k, v in enumerate(per["seeds"]):
                out[f"table4 {name} {t} seed {k}"] = v
    return {k: 100 * v for k, v in out.items() if isinstance(v, (int, float))}


def run_arm(size: str, jobs: int, out: Path) -> dict:
    shutil.rmtree(out, ignore_errors=True)
    cmd = [sys.executable, "-m", "diffseg", "demo", "--size", size, "--out", str(out), "--jobs", str(jobs)]
    t = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - t
    if proc.returncode != 0:
        sys.exit(f"`{' '.join(cmd)}` failed ({proc.returncode}):\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
    results = json.loads((out / "results.json").read_text())
    total = next(v for k, v in results["timings"].items() if k.startswith("total"))
    return {"jobs": jobs, "wall": wall, "demo_total": total, "numbers": _numbers(results)}


def main(argv: list[str] | None = None) -> dict:
    from diffseg.core.threads import available_cores

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", default="full", choices=("full", "small"))
    ap.add_argument("--jobs", type=int, default=available_cores(), help="the side-by-side arm's jobs")
    ap.add_argument("--work", type=Path, default=Path(".bench/demo_jobs"))
    ap.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = ap.parse_args(argv)

    load0 = os.getloadavg()
    arms = [run_arm(args.size, j, args.work / f"jobs{j}") for j in (1, args.jobs)]
    load1 = os.getloadavg()
    one, many = arms
    shared = sorted(set(one["numbers"]) & set(many["numbers"]))
    diff = max((abs(one["numbers"][k] - many["numbers"][k]) for k in shared), default=float("nan"))
    print(f"diffseg demo --size {args.size}, {available_cores()} cores; load average {load0[0]:.2f} -> {load1[0]:.2f}")
    print("| arm | demo total (s) | process wall (s) |")
    print("|---|---:|---:|")
    for a in arms:
        print(f"| --jobs {a['jobs']} | {a['demo_total']:.0f} | {a['wall']:.0f} |")
    print(f"ratio (--jobs 1 / --jobs {args.jobs}), demo total: {one['demo_total'] / many['demo_total']:.2f}x")
    print(f"mIoU numbers compared: {len(shared)}; largest difference between the arms: {diff:.2f} points")
    res = {"size": args.size, "arms": arms, "load": [load0[0], load1[0]], "max_miou_difference": diff}
    if args.json:
        args.json.write_text(json.dumps(res, indent=2))
    return res


if __name__ == "__main__":
    main()
