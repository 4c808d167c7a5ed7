"""Small numbers shared by every report: the mean over targets, "within noise", percent text.

Pure functions of plain floats, so the reports (nn.metrics, stages' tables, the demo report,
the benchmarks) format and compare results one way.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal, overload


@overload
def mean_over_targets(values: Sequence[float], *, missing: Literal["none"] = "none") -> float: ...
@overload
def mean_over_targets(values: Sequence[float | None], *, missing: Literal["none", "skip"] = "none") -> float | None: ...
def mean_over_targets(values: Sequence[float | None], *, missing: Literal["none", "skip"] = "none") -> float | None:
    """The plain mean of per-target values (mIoU of each target, in order; at least one target).

    A target without a value (None; NaN for `missing="skip"` too) makes the mean None with
    `missing="none"`: a table's mean column then compares like with like (the demo report, the
    per-seed means). `missing="skip"` averages the defined ones instead (an eval report's
    `mean_miou`, where an unlabelled target has no mIoU); None when none is defined."""
    if not values:
        raise ValueError("a mean over no targets")
    if missing == "skip":
        values = [v for v in values if v is not None and not math.isnan(v)]
        if not values:
            return None
    elif any(v is None for v in values):
        return None
    return sum(v for v in values if v is not None) / len(values)


# Two spreads of two results, and when their difference is called noise:
#   "larger-std":  |diff| <  max(std_a, std_b)  (a missing std counts 0)  the demo report (its ablation
#                  cells over seeds, its one-seed main runs against that spread): only larger is ranked;
#   "stds-added":  |diff| <= std_a + std_b                                 experiments/bench_premise.py,
#                  whose published reading (README) was made with it.
NoiseRule = Literal["larger-std", "stds-added"]


def within_noise(diff: float, std_a: float | None, std_b: float | None, *, rule: NoiseRule = "larger-std") -> bool:
    """Whether a difference of two means is within the noise of their spreads (see NoiseRule)."""
    a, b = std_a or 0.0, std_b or 0.0
    if rule == "stds-added":
        return abs(diff) <= a + b
    return abs(diff) < max(a, b)


def pct(v: float | None, digits: int = 2, missing: str = "n/a") -> str:
    """A fraction as percent text with `digits` decimals ("22.93"); None or NaN -> `missing`."""
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return missing
    return f"{100 * v:.{digits}f}"
