"""Learning-rate schedule (docs/design/method.md §8): linear warm-up, then poly decay (power 1).

A pure function of the iteration, so resuming needs only the iteration number:
mmcv's `PolyLrUpdaterHook(power=1, min_lr=0, by_epoch=False)` with
`warmup="linear", warmup_ratio=1e-6`:
    base(k)   = lr * (1 - k / iters) ** power
    warm(k)   = base(k) * (1 - (1 - k / warmup) * (1 - ratio))   for k < warmup
"""

from __future__ import annotations


def lr_factor(k: int, *, iters: int, warmup: int, ratio: float = 1e-6, power: float = 1.0) -> float:
    """Multiplier of the base lr at iteration k (0-based)."""
    assert 0 <= k <= iters, (k, iters)
    factor = (1.0 - k / iters) ** power
    if k < warmup:
        factor *= 1.0 - (1.0 - k / warmup) * (1.0 - ratio)
    return factor


def set_lr(optimizer, base_lrs: list[float], factor: float) -> None:
    """Give every param group its base lr times factor."""
    for group, base in zip(optimizer.param_groups, base_lrs, strict=True):
        group["lr"] = base * factor
