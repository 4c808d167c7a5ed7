"""Inversion step, v->eps, eta window and MultiDiffusion average on hand-computed cases."""

import itertools
import math

import numpy as np
import pytest
import torch
from diffusers import DDIMInverseScheduler

from diffseg.core.classes import present_classes
from diffseg.core.errors import DiffsegError
from diffseg.pipeline.inversion import eta_at, inversion_step, model_eps, v_to_eps
from diffseg.pipeline.multidiffusion import class_masks, masked_average


# a = 0.64 (sqrt 0.8, sqrt(1-a) 0.6), a' = 0.36 (sqrt 0.6), x_t = 1, eps = 0.5 -> x0 = 0.7 / 0.8 = 0.875
def _step(eta, z):
    return inversion_step(
        torch.tensor([1.0], dtype=torch.float64),
        torch.tensor([0.5], dtype=torch.float64),
        0.64,
        0.36,
        eta,
        None if z is None else torch.tensor([z], dtype=torch.float64),
    ).item()


def test_inversion_step_eta0_hand_case():
    # c1 = 0, c2 = sqrt(1 - 0.36) = 0.8: 0.6 * 0.875 + 0.8 * 0.5 = 0.925
    assert _step(0.0, None) == pytest.approx(0.925, abs=1e-12)


def test_inversion_step_eta_half_hand_case():
    # c1 = 0.5 sqrt((1 - 0.36/0.64) 0.64 / 0.36) = sqrt(7)/6; c2 = sqrt(0.64 - 7/36) = sqrt(16.04)/6
    c1, c2 = math.sqrt(7) / 6, math.sqrt(16.04) / 6
    assert c1 == pytest.approx(0.4409586, abs=1e-7)
    assert _step(0.5, 2.0) == pytest.approx(0.525 + 2 * c1 + 0.5 * c2, abs=1e-12)
    assert _step(0.5, 2.0) == pytest.approx(1.7406668, abs=1e-7)


def test_inversion_step_clamps_c2():
    # eta 1: c1^2 = 7/9 > 1 - a' = 0.64, so c2 = sqrt(1e-10) = 1e-5
    assert _step(1.0, 2.0) == pytest.approx(0.525 + 2 * math.sqrt(7) / 3 + 0.5e-5, abs=1e-12)


def test_v_to_eps_hand_case():
    # a = 0.64: eps = 0.8 v + 0.6 x
    v, x = torch.tensor([1.0, -1.0]), torch.tensor([2.0, 0.5])
    assert torch.allclose(v_to_eps(v, x, 0.64), torch.tensor([2.0, -0.5]))
    assert torch.allclose(model_eps(v, x, 0.64, "v_prediction"), torch.tensor([2.0, -0.5]))
    assert torch.equal(model_eps(v, x, 0.64, "v_prediction", raw=True), v)
    assert torch.equal(model_eps(v, x, 0.64, "epsilon"), v)
    with pytest.raises(DiffsegError, match="sample"):
        model_eps(v, x, 0.64, "sample")


def test_eta_window_is_open_interval():
    assert [eta_at(t, 1.0, (10, 250)) for t in (0, 10, 11, 249, 250, 300)] == [0, 0, 1, 1, 0, 0]
    assert eta_at(40, 0.3, (10, 250)) == 0.3


@pytest.mark.parametrize("prediction_type", ["epsilon", "v_prediction"])
def test_eta0_matches_diffusers_ddim_inverse(prediction_type):
    sched = DDIMInverseScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        clip_sample=False,
        set_alpha_to_one=False,
        steps_offset=0,
        prediction_type=prediction_type,
        timestep_spacing="leading",
    )
    sched.set_timesteps(10)  # uniform: 0, 100, ..., 900
    ts = sched.timesteps.tolist()
    assert ts[:3] == [0, 100, 200]
    ab = sched.alphas_cumprod
    g = torch.Generator().manual_seed(0)
    x = torch.randn(1, 4, 3, 3, generator=g, dtype=torch.float64)
    x_ref = x.clone()
    for t, t_next in itertools.pairwise(ts[1:6]):  # 100 -> 200, ..., 400 -> 500
        out = torch.randn(1, 4, 3, 3, generator=g, dtype=torch.float64)
        eps = model_eps(out, x, ab[t].item(), prediction_type)
        x = inversion_step(x, eps, ab[t].item(), ab[t_next].item(), eta_at(t, 0.0, (10, 250)), None)
        x_ref = sched.step(out, t_next, x_ref).prev_sample
        assert torch.allclose(x, x_ref, atol=1e-6), (t, (x - x_ref).abs().max())


def test_masked_average_2x2_hand_case():
    # K = 3 copies: global (ones), class a (left column), class b (top-left pixel)
    x_KCHW = torch.tensor([[[[1.0, 1.0], [1.0, 1.0]]], [[[4.0, 4.0], [4.0, 4.0]]], [[[7.0, 7.0], [7.0, 7.0]]]])
    m_K1HW = torch.tensor([[[[1.0, 1.0], [1.0, 1.0]]], [[[1.0, 0.0], [1.0, 0.0]]], [[[1.0, 0.0], [0.0, 0.0]]]])
    # top-left (1 + 4 + 7) / 3 = 4; bottom-left (1 + 4) / 2 = 2.5; right column 1
    expected = torch.tensor([[[4.0, 1.0], [2.5, 1.0]]])
    assert torch.equal(masked_average(x_KCHW, m_K1HW), expected)
    assert torch.equal(masked_average(list(x_KCHW), m_K1HW), expected)
    # batched [K, B, C, H, W] with B = 1
    assert torch.equal(masked_average(x_KCHW[:, None], m_K1HW), expected[None])


def test_masked_average_global_only_is_identity():
    x = torch.randn(1, 2, 4, 3, 3)
    assert torch.equal(masked_average(x, torch.ones(1, 1, 3, 3)), x[0])


def test_class_masks_nearest_resize():
    lab = np.full((16, 16), 255, np.uint8)
    lab[:8, :8] = 2
    lab[8:, :] = 0
    assert present_classes(lab) == (0, 2)
    m = class_masks(lab, (0, 2), (2, 2))
    assert m.shape == (3, 1, 2, 2)
    assert torch.equal(
        m[:, 0], torch.tensor([[[1.0, 1.0], [1.0, 1.0]], [[0.0, 0.0], [1.0, 1.0]], [[1.0, 0.0], [0.0, 0.0]]])
    )
    assert class_masks(lab, (), (2, 2)).shape == (1, 1, 2, 2)
