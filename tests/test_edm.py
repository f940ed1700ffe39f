"""EDM maths (models/svc/comosvc/edm.py) against hand-computed values and closed-form ODE
solutions."""
from __future__ import annotations

import math

import pytest
import torch

from models.svc.comosvc.edm import EDM, karras_sigmas
from tests.comosvc_fixtures import OracleNetwork

EDM_DEFAULT = EDM(sigma_data=0.5, sigma_min=0.002, sigma_max=80.0, rho=7.0, P_mean=-1.2, P_std=1.2)


def _t(v: float) -> torch.Tensor:
    return torch.tensor(v, dtype=torch.float64)


def test_preconditioning_hand_values():
    e = EDM_DEFAULT
    # sigma = 1: c_skip = 0.25 / (0.998^2 + 0.25), c_out = 0.998 * 0.5 / sqrt(1.25),
    # c_in = 1 / sqrt(1.25), c_noise = ln(1) / 4 = 0, lambda = 1.25 / 0.25.
    assert float(e.c_skip(_t(1.0))) == pytest.approx(0.2006414105, rel=1e-9)
    assert float(e.c_out(_t(1.0))) == pytest.approx(0.4463191683, rel=1e-9)
    assert float(e.c_in(_t(1.0))) == pytest.approx(0.8944271910, rel=1e-9)
    assert float(e.c_noise(_t(1.0))) == 0.0
    assert float(e.loss_weight(_t(1.0))) == pytest.approx(5.0, rel=1e-12)
    # sigma = 80: c_noise = ln(80) / 4, lambda = 6400.25 / 1600.
    assert float(e.c_noise(_t(80.0))) == pytest.approx(1.0955066587, rel=1e-9)
    assert float(e.loss_weight(_t(80.0))) == pytest.approx(4.00015625, rel=1e-12)
    assert float(e.c_in(_t(80.0))) == pytest.approx(0.0124997559, rel=1e-8)
    # Boundary condition of consistency models: D(x; sigma_min) = x.
    assert float(e.c_skip(_t(0.002))) == 1.0
    assert float(e.c_out(_t(0.002))) == 0.0


def test_karras_sigmas():
    s = karras_sigmas(3, 0.002, 80.0, 7.0)
    # ((80^(1/7) + 0.002^(1/7)) / 2)^7 = 2.5152...
    assert s.tolist() == pytest.approx([80.0, 2.515218976, 0.002], rel=1e-9)
    s40 = karras_sigmas(40, 0.002, 80.0, 7.0)
    assert s40.shape == (40,) and bool((s40[1:] < s40[:-1]).all())
    assert float(s40[0]) == pytest.approx(80.0) and float(s40[-1]) == pytest.approx(0.002)
    assert karras_sigmas(1, 0.002, 80.0, 7.0).tolist() == [80.0]
    with pytest.raises(ValueError, match="at least one"):
        karras_sigmas(0, 0.002, 80.0, 7.0)


def test_invalid_edm_settings_are_rejected():
    with pytest.raises(ValueError, match="sigma_min < sigma_max"):
        EDM(sigma_min=1.0, sigma_max=0.5)


def test_denoise_composes_the_preconditioning():
    e = EDM_DEFAULT
    seen = {}

    def net(x_in, c_noise, mu, mask):
        seen.update(x_in=x_in, c_noise=c_noise)
        return torch.ones_like(x_in)

    x = torch.randn(2, 3, 5, dtype=torch.float64)
    mu = torch.zeros_like(x)
    sigma = torch.tensor([1.0, 80.0], dtype=torch.float64)
    d = e.denoise(net, x, sigma, mu, torch.ones(2, 5, dtype=torch.bool))
    s = sigma[:, None, None]
    torch.testing.assert_close(seen["x_in"], x * e.c_in(s))
    torch.testing.assert_close(seen["c_noise"], torch.log(sigma) / 4)
    torch.testing.assert_close(d, e.c_skip(s) * x + e.c_out(s))


def test_anchor_to_mu_keeps_the_boundary_and_starts_at_mu():
    e = EDM(anchor_to_mu=True)
    zero = lambda x_in, c_noise, mu, mask: torch.zeros_like(x_in)  # noqa: E731  (untrained F)
    x = torch.randn(1, 3, 4, dtype=torch.float64)
    mu = torch.randn(1, 3, 4, dtype=torch.float64)
    mask = torch.ones(1, 4, dtype=torch.bool)
    torch.testing.assert_close(e.denoise(zero, x, e.sigma_min, mu, mask), x)  # D(x; sigma_min) = x
    c_skip = e.c_skip(torch.tensor(80.0, dtype=torch.float64))
    torch.testing.assert_close(e.denoise(zero, x, 80.0, mu, mask), c_skip * x + (1 - c_skip) * mu)
    assert (e.denoise(zero, x, 80.0, mu, mask) - mu).abs().max() < 1e-3
    plain = EDM().denoise(zero, x, 80.0, mu, mask)
    assert plain.abs().max() < 1e-3  # Amphion's form starts at 0 instead


def test_add_noise_has_mean_sigma_mu():
    y = torch.full((1, 2, 3), 0.5)
    mu = torch.full((1, 2, 3), -0.25)
    eps = torch.zeros(1, 2, 3)
    torch.testing.assert_close(EDM.add_noise(y, 4.0, mu, eps), torch.full((1, 2, 3), 0.5 - 1.0))


def test_edm_loss_values_and_masking():
    e = EDM_DEFAULT
    y = torch.rand(3, 4, 6, dtype=torch.float64) * 2 - 1
    mu = torch.rand_like(y)
    mask = torch.ones(3, 6, dtype=torch.bool)
    mask[2, 4:] = False
    y[2, :, 4:] = 0
    # The ideal denoiser of a point mass at y reproduces y: zero loss.
    oracle = OracleNetwork(e, lambda x, sigma, m: y)
    assert float(e.loss(oracle, y, mu, mask)) < 1e-20

    # F = 0: D = c_skip x; recompute the loss by hand from the same random draws.
    def zero(x_in, c_noise, m, k):
        return torch.zeros_like(x_in)

    loss = e.loss(zero, y, mu, mask, generator=torch.Generator().manual_seed(3))
    g = torch.Generator().manual_seed(3)
    sigma = torch.exp(-1.2 + 1.2 * torch.randn(3, generator=g, dtype=torch.float64))[:, None, None]
    eps = torch.randn(y.shape, generator=g, dtype=torch.float64)
    x = y + sigma * (eps + mu)
    lam = (sigma ** 2 + 0.25) / (sigma * 0.5) ** 2
    err = lam * (e.c_skip(sigma) * x - y) ** 2
    expected = (err[0].sum() + err[1].sum() + err[2, :, :4].sum()) / (4 * (6 + 6 + 4))
    assert float(loss) == pytest.approx(float(expected), rel=1e-10)
    # Values on padded frames never matter.
    y2 = y.clone()
    y2[2, :, 4:] = 7.0
    loss2 = e.loss(zero, y2, mu, mask, generator=torch.Generator().manual_seed(3))
    assert float(loss2) == pytest.approx(float(loss), rel=1e-12)


def _gaussian_case(e: EDM, s: float):
    """Data y ~ N(0, s^2) per cell: the ideal denoiser of x = y + sigma (eps + mu) is
    D = s^2 / (s^2 + sigma^2) (x - sigma mu); along the PF-ODE u = x - sigma mu scales with
    sqrt(s^2 + sigma^2), so from sigma_max (eps + mu) it reaches, at sigma_min,
    sigma_max eps sqrt(s^2 + sigma_min^2) / sqrt(s^2 + sigma_max^2) + sigma_min mu."""
    return OracleNetwork(e, lambda x, sigma, mu: s ** 2 / (s ** 2 + sigma ** 2) * (x - sigma * mu))


@pytest.mark.parametrize("sampler", ["euler", "heun"])
def test_sampler_is_exact_for_a_point_mass(sampler):
    e = EDM_DEFAULT
    y = torch.rand(2, 3, 8, dtype=torch.float64)
    mu = torch.randn_like(y)
    mask = torch.ones(2, 8, dtype=torch.bool)
    mask[1, 6:] = False
    g = torch.Generator().manual_seed(0)
    out = e.sample(OracleNetwork(e, lambda x, sigma, m: y), mu, mask, steps=5, sampler=sampler,
                   generator=g)
    # Straight trajectories x(sigma) = y + sigma / sigma_max (x_0 - y) from x_0 = sigma_max z:
    # both solvers are exact and land on sigma = sigma_min.
    z = torch.randn(y.shape, generator=torch.Generator().manual_seed(0), dtype=y.dtype) + mu
    expected = y + 0.002 / 80.0 * (80.0 * z - y)
    torch.testing.assert_close(out, expected * mask[:, None], atol=1e-12, rtol=0)


def test_solvers_converge_to_the_gaussian_ode_solution_at_their_order():
    e, s = EDM_DEFAULT, 0.7
    mu = torch.randn(1, 4, 50, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    mask = torch.ones(1, 50, dtype=torch.bool)
    eps = torch.randn(mu.shape, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    exact = 80.0 * eps * math.sqrt(s ** 2 + 0.002 ** 2) / math.sqrt(s ** 2 + 80.0 ** 2) + 0.002 * mu
    net = _gaussian_case(e, s)
    err = {}
    for sampler in ("euler", "heun"):
        for steps in (20, 40):
            out = e.sample(net, mu, mask, steps=steps, sampler=sampler,
                           generator=torch.Generator().manual_seed(5))
            err[sampler, steps] = float((out - exact).abs().max() / exact.abs().max())
    # Halving the step size divides Euler's global error by ~2 and Heun's by ~4.
    assert 1.7 < err["euler", 20] / err["euler", 40] < 2.3
    assert 3.5 < err["heun", 20] / err["heun", 40] < 4.5
    assert err["heun", 40] < 0.01 < err["euler", 40]
    with pytest.raises(ValueError, match="unknown sampler"):
        e.sample(net, mu, mask, steps=2, sampler="dpm")
    with pytest.raises(ValueError, match="steps >= 1"):
        e.sample(net, mu, mask, steps=0)


def test_heun_step_into_sigma_min_is_an_euler_step():
    """D(x; sigma_min) = x makes the slope at sigma_min zero by construction; a Heun step ending
    there must not average it in."""
    e, s = EDM_DEFAULT, 0.7
    net = _gaussian_case(e, s)
    x = torch.randn(3, 2, 5, dtype=torch.float64)
    mu = torch.zeros_like(x)
    mask = torch.ones(3, 5, dtype=torch.bool)
    sigma = torch.tensor([0.01, 0.01, 0.01], dtype=torch.float64)
    sigma_next = torch.tensor([0.002, 0.005, 0.002], dtype=torch.float32).double()
    heun = e.heun_step(net, x, sigma, sigma_next, mu, mask)
    euler = e.euler_step(net, x, sigma, sigma_next, mu, mask)
    torch.testing.assert_close(heun[[0, 2]], euler[[0, 2]])
    assert float((heun[1] - euler[1]).abs().max()) > 1e-6
