"""Consistency distillation of the EDM teacher into a one-step student (Song, Dhariwal, Chen &
Sutskever 2023, "Consistency Models", Algorithms 1-2), as CoMoSpeech (Ye et al. 2023) and CoMoSVC
(Lu et al. 2024) apply it to mels with noise of mean mu.

Grid: the Karras levels t_1 = sigma_min < ... < t_N = sigma_max (N = ``n_timesteps``). Per
utterance draw n uniformly from 1 .. N - 1 and eps ~ N(0, I); then

    x_{n+1} = y + t_{n+1} (eps + mu)
    x^_n    = one Heun step of the teacher's PF-ODE from t_{n+1} to t_n, started at x_{n+1}
    L       = mean over real cells of (f_theta(x_{n+1}, t_{n+1}) - f_theta-(x^_n, t_n))^2

where f is the EDM-preconditioned denoiser (edm.py; f(x, sigma_min) = x by construction), theta the
student and theta- the target network, an exponential moving average of the student
(theta- <- mu theta- + (1 - mu) theta after each optimizer step, mu = ``ema_decay``); no gradient
flows through the target. Sampling (Song et al. Algorithm 1): x = f_theta-(sigma_max (eps + mu),
sigma_max); for k steps, re-noise to the next level tau with x + sqrt(tau^2 - sigma_min^2)(eps + mu)
and apply f again.
"""
from __future__ import annotations

import torch
from torch import nn

from models.svc.comosvc.edm import EDM, Network, karras_sigmas, seeded


def consistency_distillation_loss(edm: EDM, student: Network, target: Network, teacher: Network,
                                  y: torch.Tensor, mu: torch.Tensor, mask: torch.Tensor,
                                  n_timesteps: int,
                                  generator: torch.Generator | None = None) -> torch.Tensor:
    """The consistency-distillation loss (Song et al. 2023, eq. 7 with d = squared L2,
    lambda = 1, Heun as the ODE solver Phi).

    Args:
        edm: preconditioning and teacher ODE; student / target / teacher: denoiser networks F.
        y: (B, n_mel, T) clean mel; mu: (B, n_mel, T) coarse mel; mask: (B, T) bool.
        n_timesteps: N >= 2 levels of the Karras grid.
        generator: optional, for reproducible draws of n and eps (on y's device).
    Returns: scalar tensor (gradient only into the student).
    """
    return consistency_distillation_terms(edm, student, target, teacher, y, mu, mask,
                                          n_timesteps, generator)[0]


def consistency_distillation_terms(edm: EDM, student: Network, target: Network, teacher: Network,
                                   y: torch.Tensor, mu: torch.Tensor, mask: torch.Tensor,
                                   n_timesteps: int, generator: torch.Generator | None = None
                                   ) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`consistency_distillation_loss` and the student's estimate of the clean mel,
    f(x_{n+1}, t_{n+1}) (B, n_mel, T), with its gradient (a one-step sample at t_{n+1} =
    sigma_max)."""
    t = karras_sigmas(n_timesteps, edm.sigma_min, edm.sigma_max, edm.rho, y.device).flip(0)
    t = t.to(y.dtype)
    n = torch.randint(0, n_timesteps - 1, (y.shape[0],), device=y.device, **seeded(generator))
    t_n, t_next = t[n], t[n + 1]
    eps = torch.randn(y.shape, device=y.device, dtype=y.dtype, **seeded(generator))
    x_next = edm.add_noise(y, t_next, mu, eps)
    pred = edm.denoise(student, x_next, t_next, mu, mask)
    with torch.no_grad():
        x_hat = edm.heun_step(teacher, x_next, t_next, t_n, mu, mask)
        aim = edm.denoise(target, x_hat, t_n, mu, mask)
    m = mask[:, None, :].to(y.dtype)
    return (((pred - aim) ** 2) * m).sum() / (m.sum() * y.shape[1]).clamp(min=1.0), pred


@torch.no_grad()
def ema_update(target: nn.Module, student: nn.Module, decay: float) -> None:
    """theta- <- decay * theta- + (1 - decay) * theta for every parameter; buffers are copied."""
    for p_target, p_student in zip(target.parameters(), student.parameters()):
        p_target.lerp_(p_student, 1.0 - decay)
    for b_target, b_student in zip(target.buffers(), student.buffers()):
        b_target.copy_(b_student)


def consistency_sample(edm: EDM, net: Network, mu: torch.Tensor, mask: torch.Tensor, steps: int,
                       generator: torch.Generator | None = None,
                       sigma_start: float | None = None) -> torch.Tensor:
    """Multistep consistency sampling (Song et al. 2023, Algorithm 1).

    steps = 1: f(sigma_max (eps + mu), sigma_max), one network evaluation. steps = k > 1: the
    levels are the first k of the (k + 1)-level Karras grid (sigma_max down to, not including,
    sigma_min), re-noising with fresh eps before each later step; k evaluations.
    Shallow (``sigma_start`` < sigma_max, as EDM.sample): the grid starts at sigma_start and the
    first input is mu + sigma_start (eps + mu).
    Returns: (B, n_mel, T), at least float32 (as EDM.sample), zero on padded frames.
    Raises: ValueError for steps < 1 or sigma_start outside (sigma_min, sigma_max].
    """
    if steps < 1:
        raise ValueError(f"consistency sampling needs steps >= 1, got {steps}")
    start = edm.sigma_max if sigma_start is None else sigma_start
    if not edm.sigma_min < start <= edm.sigma_max:
        raise ValueError(f"sigma_start = {start} must lie in (sigma_min, sigma_max] = "
                         f"({edm.sigma_min}, {edm.sigma_max}]")
    levels = [start] if steps == 1 else \
        karras_sigmas(steps + 1, edm.sigma_min, start, edm.rho)[:-1].tolist()
    mu = mu.to(torch.promote_types(mu.dtype, torch.float32))
    m = mask[:, None, :].to(mu.dtype)
    x = torch.zeros_like(mu) if sigma_start is None else mu
    for i, tau in enumerate(levels):
        eps = torch.randn(mu.shape, generator=generator, device=mu.device, dtype=mu.dtype)
        scale = tau if i == 0 else (tau ** 2 - edm.sigma_min ** 2) ** 0.5
        x = edm.denoise(net, (x + scale * (eps + mu)) * m, tau, mu, mask)
    return x * m
