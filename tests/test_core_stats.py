"""The report numbers every table shares (core/stats.py) and the one "which classes are present"
(core/classes.py), pinned on cases small enough to check by hand."""

import math

import numpy as np

from diffseg.core.classes import IGNORE, present_classes
from diffseg.core.stats import mean_over_targets, pct, within_noise


def test_mean_over_targets_missing_none_or_skipped():
    assert mean_over_targets([0.2, 0.4]) == 0.30000000000000004  # (0.2 + 0.4) / 2, summed in order
    assert mean_over_targets([0.2, None]) is None
    assert mean_over_targets([0.2, None, math.nan, 0.4], missing="skip") == 0.30000000000000004
    assert mean_over_targets([None], missing="skip") is None


def test_within_noise_rules():
    assert within_noise(0.02, 0.01, 0.03) and not within_noise(0.03, 0.01, 0.03)  # larger std, strict
    assert not within_noise(0.01, None, None)  # no spread: ranked
    assert within_noise(0.04, 0.01, 0.03, rule="stds-added") and not within_noise(0.05, 0.01, 0.03, rule="stds-added")


def test_pct_digits_and_missing():
    assert (pct(0.22934), pct(0.22934, 1), pct(None), pct(math.nan, missing="-")) == ("22.93", "22.9", "n/a", "-")


def test_present_classes_threshold_and_ignore():
    label = np.full((10, 10), IGNORE, np.uint8)
    label[:5] = 3  # 50 %
    label[5, :2] = 7  # 2 %
    label[6, 0] = 1  # 1 %
    assert present_classes(label) == (1, 3, 7)
    assert present_classes(label, 0.02) == (3, 7)
    assert present_classes(label, 0.03) == (3,)
