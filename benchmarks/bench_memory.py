"""Peak memory of stage one and stage two, and how it changes from 8 to 64 samples.

Both stages are meant to stream: extraction holds one sample's trajectory at a time and
training reads one batch at a time, so the peak should not grow with the sample count.
Each command runs in a fresh interpreter (`_peak.py`) on the demo dataset with `tiny`.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path


def _peak(argv: list[str]) -> dict:
    out = subprocess.run(
        [sys.executable, str(Path(__file__).with_name("_peak.py")), *argv],
        check=True,
        capture_output=True,
        text=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def run(counts: tuple[int, ...] = (8, 64), resolution: str = "128x128", iters: int = 20, views: int = 8) -> dict:
    """Samples = images x views of the demo training split (both branches), so 64 samples fit
    inside its 48 images."""
    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        for n in counts:
            cache = Path(tmp) / f"demo-{n}"
            ext = _peak(
                [
                    "extract",
                    "--dataset",
                    "demo",
                    "--model",
                    "tiny",
                    "--preset",
                    "5step",
                    "--resolution",
                    resolution,
                    "--limit",
                    str(n // views),
                    "--views",
                    str(views),
                    "--out",
                    str(cache),
                ]
            )
            trn = _peak(
                [
                    "train",
                    "--cache",
                    str(cache),
                    "--out",
                    str(Path(tmp) / f"run-{n}"),
                    "--iters",
                    str(iters),
                    "--batch-size",
                    "2",
                    "--fusion",
                    "light",
                    "--warmup",
                    "2",
                    "--eval-every",
                    "0",
                    "--read-threads",
                    "0",
                ]
            )
            rows[n] = {"extract_peak_mib": ext["peak_mib"], "train_peak_mib": trn["peak_mib"]}
    lo, hi = min(counts), max(counts)
    return {
        "rows": rows,
        "extract_growth": rows[hi]["extract_peak_mib"] / rows[lo]["extract_peak_mib"],
        "train_growth": rows[hi]["train_peak_mib"] / rows[lo]["train_peak_mib"],
    }


def markdown(res: dict) -> str:
    lines = ["| samples | extract peak (MiB) | train peak (MiB) |", "|---|---|---|"]
    for n, r in res["rows"].items():
        lines.append(f"| {n} | {r['extract_peak_mib']:.0f} | {r['train_peak_mib']:.0f} |")
    lines.append(
        f"\nPeak growth from {min(res['rows'])} to {max(res['rows'])} samples: "
        f"extract x{res['extract_growth']:.2f}, train x{res['train_growth']:.2f} (1.00 = flat)."
    )
    return "\n".join(lines)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--iters", type=int, default=20)
    args = parser.parse_args()
    print(markdown(run(iters=args.iters)))
