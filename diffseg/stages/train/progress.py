"""Training progress: a window of iterations -> one metrics.jsonl record and one progress line.

The record holds the mean loss terms, the lr of both parameter groups, throughput
(samples/s over all processes), data-wait seconds (time blocked on the BatchLoader) and
their share of the window's wall time. The line is a tqdm bar with those in its postfix
on a terminal, a plain line every `log_every` iterations otherwise (logs, CI).
"""

from __future__ import annotations

import sys
import time
from collections import defaultdict

from tqdm import tqdm


class Window:
    """Accumulates per-iteration values between two records."""

    def __init__(self):
        self.reset()

    def reset(self) -> None:
        self.t0 = time.perf_counter()
        self.terms: dict[str, float] = defaultdict(float)
        self.iters = 0
        self.samples = 0
        self.wait = 0.0

    def add(self, terms: dict[str, float], samples: int, wait: float) -> None:
        for k, v in terms.items():
            self.terms[k] += v
        self.iters += 1
        self.samples += samples
        self.wait += wait

    def record(self, iteration: int, lrs: list[float]) -> dict:
        wall = max(time.perf_counter() - self.t0, 1e-9)
        n = max(self.iters, 1)
        rec = {
            "iter": iteration,
            **{k: v / n for k, v in self.terms.items()},
            "lr": lrs[0],
            "lr_head": lrs[-1],
            "samples_per_s": self.samples / wall,
            "data_wait_s": self.wait,
            "data_wait_share": self.wait / wall,
            "wall_s": wall,
        }
        return rec


class Progress:
    """tqdm bar on a terminal, periodic plain lines otherwise; rank 0 only."""

    def __init__(self, total: int, start: int, enabled: bool):
        self.tty = sys.stderr.isatty()
        self.enabled = enabled
        self.total = total
        self.t0, self.start = time.perf_counter(), start
        self.bar = (
            tqdm(total=total, initial=start, disable=not (enabled and self.tty), dynamic_ncols=True, desc="train")
            if enabled
            else None
        )

    def update(self, iteration: int, rec: dict | None) -> None:
        if self.bar is None:  # not enabled (rank > 0)
            return
        if self.tty:
            self.bar.update(1)
            if rec is not None:
                self.bar.set_postfix_str(_postfix(rec), refresh=False)
        elif rec is not None:
            done = iteration - self.start
            rate = done / max(time.perf_counter() - self.t0, 1e-9)
            eta = (self.total - iteration) / rate if rate > 0 else float("inf")
            print(f"iter {iteration}/{self.total} {_postfix(rec)} eta {_hms(eta)}", file=sys.stderr, flush=True)

    def note(self, line: str) -> None:
        if self.bar is not None:  # enabled (rank 0)
            (self.bar.write(line, file=sys.stderr) if self.tty else print(line, file=sys.stderr, flush=True))

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _postfix(rec: dict) -> str:
    terms = " ".join(f"{k} {rec[k]:.4f}" for k in ("total", "ce_uncond", "ce_cond", "cons") if k in rec)
    return f"{terms} lr {rec['lr']:.2e} {rec['samples_per_s']:.1f} samples/s wait {100 * rec['data_wait_share']:.1f}%"


def _hms(seconds: float) -> str:
    if seconds == float("inf"):
        return "?"
    s = int(seconds)
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}"
