"""DDIM inversion step with an eta window, and v -> epsilon (docs/design/method.md §1-2).

Pure functions on tensors; the noise z is passed in (drawn by the caller from a seeded
generator). alpha_bar values are python floats or 0-d/broadcastable tensors.
"""

from __future__ import annotations

import math

import torch

from diffseg.core.errors import DiffsegError

PREDICTION_TYPES = ("epsilon", "v_prediction")


def v_to_eps(v: torch.Tensor, x_t: torch.Tensor, alpha_bar: float) -> torch.Tensor:
    """eps = sqrt(a) * v + sqrt(1 - a) * x_t, with a = alpha_bar_t."""
    return math.sqrt(alpha_bar) * v + math.sqrt(1.0 - alpha_bar) * x_t


def model_eps(
    output: torch.Tensor, x_t: torch.Tensor, alpha_bar: float, prediction_type: str, raw: bool = False
) -> torch.Tensor:
    """Epsilon from the U-Net output. raw=True reproduces the reference code, which treats
    the output as epsilon whatever the model predicts."""
    if prediction_type not in PREDICTION_TYPES:
        raise DiffsegError(f"unsupported prediction type {prediction_type!r} (expected {', '.join(PREDICTION_TYPES)})")
    if raw or prediction_type == "epsilon":
        return output
    return v_to_eps(output, x_t, alpha_bar)


def eta_at(t: int, eta: float, window: tuple[int, int]) -> float:
    """eta inside the open window lo < t < hi, else 0 (reference: eta 1, 10 < t < 250)."""
    lo, hi = window
    return float(eta) if lo < t < hi else 0.0


def inversion_step(
    x_t: torch.Tensor,
    eps: torch.Tensor,
    alpha_bar_t: float,
    alpha_bar_next: float,
    eta: float,
    noise: torch.Tensor | None,
) -> torch.Tensor:
    """One DDIM step in the inversion direction (clean -> noisy), a' = alpha_bar_next < a.

    x0 = (x_t - sqrt(1-a) eps) / sqrt(a); c1 = eta sqrt((1 - a'/a)(1 - a') / (1 - a));
    c2 = sqrt(max(1 - a' - c1^2, 1e-10)); x_next = sqrt(a') x0 + c1 z + c2 eps.
    `noise` may be None only when eta == 0.
    """
    a, a_next = float(alpha_bar_t), float(alpha_bar_next)
    x0 = (x_t - math.sqrt(1.0 - a) * eps) / math.sqrt(a)
    c1 = eta * math.sqrt((1.0 - a_next / a) * (1.0 - a_next) / (1.0 - a))
    c2 = math.sqrt(max(1.0 - a_next - c1 * c1, 1e-10))
    x_next = math.sqrt(a_next) * x0 + c2 * eps
    if c1 != 0.0:
        assert noise is not None, "eta > 0 needs noise"
        x_next = x_next + c1 * noise
    return x_next
