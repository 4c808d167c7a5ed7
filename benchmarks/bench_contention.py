"""Contention: extraction and a short training run, idle vs next to one busy process.

Run: `python -m benchmarks.bench_contention [--images 32] [--iters 60]`. On a shared machine
torch's OpenMP threads used to spin for a core another process held: extracting the demo
images with `tiny` took 6.4x its idle time next to one busy process. Here, side
by side in one run, each command runs idle and with one competing busy process (a Python
`while True` loop: one core), under

- old: OMP_WAIT_POLICY unset (OpenMP's default, spinning a while before sleeping) and torch's
  default thread count (all cores), i.e. what the CLI did before core/threads.py (reproduced by
  importing torch before the CLI, so it leaves the settings alone);
- active: OMP_WAIT_POLICY=ACTIVE (spin, never sleep: the fastest on an idle machine);
- spin: PASSIVE after a bounded spin (GOMP_SPINCOUNT=2000; GNU OpenMP reads it even under PASSIVE);
- one: the CLI's policy at one thread (DIFFSEG_THREADS=1);
- new: the CLI's own (`python -m diffseg ...`: PASSIVE, threads = available cores).

Commands: `extract` of N demo images with `tiny` at 128 px (uncond, default preset), then
`train` (light fusion, batch 2, reader threads 2) on that cache. Wall time of the whole
command (start-up included: that is what a user waits for) and, for extraction, the loop
time it reports. Goal: busy / idle <= 1.5. The load average before and after is printed:
"idle" means no competitor of ours, not an idle machine.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

_THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OMP_WAIT_POLICY", "DIFFSEG_THREADS")
CLEAN = {k: v for k, v in os.environ.items() if k not in _THREAD_VARS}
CLI = [sys.executable, "-m", "diffseg"]
# settings: (command line, extra environment); the user's OMP_WAIT_POLICY wins over diffseg's
SETTINGS = {
    "old": ([sys.executable, "-c", "import torch; from diffseg.cli import main; main()"], {}),
    "active": (CLI, {"OMP_WAIT_POLICY": "ACTIVE"}),
    "spin": (CLI, {"OMP_WAIT_POLICY": "PASSIVE", "GOMP_SPINCOUNT": "2000"}),
    "one": (CLI, {"DIFFSEG_THREADS": "1"}),
    "new": (CLI, {}),
}
NAMES = {
    "old": "old (OMP_WAIT_POLICY unset, torch default threads)",
    "active": "ACTIVE (spin, never sleep)",
    "spin": "PASSIVE after 2000 spins",
    "one": "diffseg's at one thread",
    "new": "new (diffseg's: PASSIVE, available cores)",
}


def load() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3]) if Path("/proc/loadavg").exists() else "?"


def run(argv: list[str], env: dict[str, str] | None = None) -> tuple[float, str]:
    t0 = time.perf_counter()
    proc = subprocess.run(argv, env={**CLEAN, **(env or {})}, capture_output=True, text=True)
    took = time.perf_counter() - t0
    if proc.returncode != 0:
        sys.exit(f"{' '.join(argv)} failed:\n{proc.stderr[-2000:]}")
    return took, proc.stdout


class Busy:
    """One competing process keeping one core busy while the block runs."""

    def __enter__(self) -> Busy:
        self.proc = subprocess.Popen([sys.executable, "-c", "while True: pass"])
        time.sleep(0.5)
        return self

    def __exit__(self, *exc) -> None:
        self.proc.kill()
        self.proc.wait()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=32)
    ap.add_argument("--iters", type=int, default=60)
    ap.add_argument("--settings", default=",".join(SETTINGS), help="which settings, comma-separated")
    args = ap.parse_args()
    chosen = [x for x in args.settings.split(",") if x]
    rows = []
    print(f"load average before: {load()}; cores: {len(os.sched_getaffinity(0))}")
    with tempfile.TemporaryDirectory() as tmp:
        extract = ["extract", "--dataset", "demo", "--model", "tiny", "--resolution", "128x128", "--device", "cpu"]
        extract += ["--limit", str(args.images), "--branches", "uncond"]
        cache = Path(tmp) / "cache"
        run([*CLI, *extract, "--out", str(cache)])  # the training cache (and a warm-up)
        train = ["train", "--cache", str(cache), "--branches", "uncond", "--fusion", "light", "--iters"]
        train += [str(args.iters), "--batch-size", "2", "--eval-every", "0", "--read-threads", "2", "--device", "cpu"]
        k = 0
        for what, argv in (("extract", extract), ("train", train)):
            for settings in chosen:
                launch, env = SETTINGS[settings]
                times: dict[str, tuple[float, str]] = {}
                for state in ("idle", "busy"):
                    k += 1
                    out = ["--out", str(Path(tmp) / f"out{k}")]
                    with Busy() if state == "busy" else contextlib.nullcontext():
                        times[state] = run([*launch, *argv, *out], env)
                loops = [re.search(r"samples written.*?, ([0-9.]+) s,", times[s][1]) for s in ("idle", "busy")]
                loop = f"{loops[0][1]} / {loops[1][1]}" if loops[0] and loops[1] else "-"
                rows.append((what, settings, times["idle"][0], times["busy"][0], loop))
                print(f"{what} {settings}: idle {times['idle'][0]:.1f} s, busy {times['busy'][0]:.1f} s", flush=True)
    print(f"load average after: {load()}\n")
    print(
        "| command | settings | idle (s) | idle / best idle | one busy process (s) | busy / idle | loop idle / busy (s) |"
    )
    print("|---|---|---|---|---|---|---|")
    for what, settings, idle, busy, loop in rows:
        best = min(r[2] for r in rows if r[0] == what)
        print(
            f"| {what} | {NAMES[settings]} | {idle:.1f} | {idle / best:.2f} | {busy:.1f} | **{busy / idle:.2f}** | {loop} |"
        )
    print(
        "\nGoals for `new`: idle within 1.1x of the best idle; busy / idle at most 1.5 (not met: docs/notes/timings.md)."
    )


if __name__ == "__main__":
    main()
