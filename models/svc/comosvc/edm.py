"""EDM diffusion of mels around the coarse mel mu (Karras, Aittala, Aila & Laine 2022,
"Elucidating the Design Space of Diffusion-Based Generative Models", EDM), in the form CoMoSpeech
(Ye et al. 2023) and CoMoSVC (Lu et al. 2024) use.

Noise with mean mu (Grad-TTS' prior, Popov et al. 2021): x = y + sigma * (eps + mu), eps ~ N(0, I).
Along x(sigma) = y + sigma * z the probability-flow ODE keeps the EDM form
dx/dsigma = (x - D(x; sigma)) / sigma (Karras eq. 3 with sigma(t) = t), since E[z | x] =
(x - E[y | x]) / sigma.

Denoiser (Karras eq. 7, Table 1), with the boundary-respecting skip / output scalings of
consistency models (Song, Dhariwal, Chen & Sutskever 2023, Appendix C), so D(x; sigma_min) = x:

    D(x; sigma) = c_skip(sigma) x + c_out(sigma) F(c_in(sigma) x, c_noise(sigma); mu)
    c_skip  = sigma_data^2 / ((sigma - sigma_min)^2 + sigma_data^2)
    c_out   = (sigma - sigma_min) sigma_data / sqrt(sigma^2 + sigma_data^2)
    c_in    = 1 / sqrt(sigma^2 + sigma_data^2)
    c_noise = ln(sigma) / 4

(Amphion keeps Karras' c_skip = sigma_data^2 / (sigma^2 + sigma_data^2), which differs by < 0.5 %
and leaves D(x; sigma_min) = 0.99998 x.)

Optionally (``model.comosvc.anchor_to_mu``, off by default, Amphion's form) the skip term is anchored
to the coarse mel: D(x; sigma) = c_skip x + (1 - c_skip) mu + c_out F. The boundary condition
D(x; sigma_min) = x still holds, the loss and samplers are unchanged, and an untrained or briefly
trained F (zero-initialised) then gives D = mu at high noise instead of 0: on a demo-size model
trained 800 steps on CPU, the plain form's denoiser was worse than mu itself at every sigma >= 0.5
(mel L1 0.18-0.21 vs 0.16 on held-out songs), and its 40-step samples twice as far from the target
as mu (0.40). Short CPU trainings (the demo) use it; the full recipe keeps Amphion's form.

Training (Karras Table 1): ln(sigma) ~ N(P_mean, P_std^2), loss lambda(sigma) ||D - y||^2 with
lambda = (sigma^2 + sigma_data^2) / (sigma sigma_data)^2. Sampling: the Karras grid (eq. 5)
sigma_i = (sigma_max^(1/rho) + i / (N - 1) (sigma_min^(1/rho) - sigma_max^(1/rho)))^rho, integrated
with Euler or Heun's 2nd-order method (Algorithm 1, deterministic) down to sigma_min, where
D(x; sigma_min) = x ends the trajectory (see :meth:`EDM.sample`).
"""
from __future__ import annotations

from typing import Callable

import torch

from utils.schema import ComoSVCConfig

# Relative tolerance for recognising sigma_min on a (float32) grid.
SIGMA_MIN_RTOL = 1e-4
# F(c_in x, c_noise, mu, mask) -> (B, n_mel, T): the denoiser network (modules/diffusion/bidilconv).
Network = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


def karras_sigmas(n: int, sigma_min: float, sigma_max: float, rho: float,
                  device: torch.device | str | None = None) -> torch.Tensor:
    """The Karras et al. 2022 (eq. 5) noise levels, descending from sigma_max to sigma_min.

    Args: n >= 1 levels (n = 1 gives [sigma_max]); sigma_min < sigma_max; rho > 0; device: where
        to compute them (on a GPU: no host-to-device copy in a training step).
    Returns: (n,) float64 tensor.
    Raises: ValueError for n < 1.
    """
    if n < 1:
        raise ValueError(f"need at least one noise level, got {n}")
    if n == 1:
        return torch.full((1,), sigma_max, dtype=torch.float64, device=device)
    ramp = torch.arange(n, dtype=torch.float64, device=device) / (n - 1)
    lo, hi = sigma_min ** (1.0 / rho), sigma_max ** (1.0 / rho)
    return (hi + ramp * (lo - hi)) ** rho


def seeded(generator: torch.Generator | None) -> dict:
    """``{"generator": generator}``, or {} for None: torch.compile cannot trace the generator
    overloads of randn / randint with symbolic (dynamic) shapes, even given None."""
    return {} if generator is None else {"generator": generator}


def _per_item(sigma: torch.Tensor | float, like: torch.Tensor) -> torch.Tensor:
    """sigma as a (B, 1, 1) tensor of ``like``'s dtype and device (scalar or (B,) in)."""
    sigma = torch.as_tensor(sigma, dtype=like.dtype, device=like.device)
    return sigma.reshape(-1, 1, 1).expand(like.shape[0], 1, 1)


class EDM:
    """EDM preconditioning, training loss and deterministic samplers (no parameters).

    Args: sigma_data, sigma_min, sigma_max, rho, P_mean, P_std as in Karras et al. 2022.
    Raises: ValueError unless 0 < sigma_min < sigma_max, sigma_data > 0, rho > 0, P_std > 0.

    Tensors: y, x, mu (B, n_mel, T); mask (B, T) bool; sigma (B,) or a float.
    """

    def __init__(self, sigma_data: float = 0.5, sigma_min: float = 0.002, sigma_max: float = 80.0,
                 rho: float = 7.0, P_mean: float = -1.2, P_std: float = 1.2,
                 anchor_to_mu: bool = False):
        if not (0 < sigma_min < sigma_max and sigma_data > 0 and rho > 0 and P_std > 0):
            raise ValueError(f"EDM needs 0 < sigma_min < sigma_max, sigma_data > 0, rho > 0, "
                             f"P_std > 0; got sigma_min={sigma_min}, sigma_max={sigma_max}, "
                             f"sigma_data={sigma_data}, rho={rho}, P_std={P_std}")
        self.sigma_data, self.sigma_min, self.sigma_max = sigma_data, sigma_min, sigma_max
        self.rho, self.P_mean, self.P_std = rho, P_mean, P_std
        self.anchor_to_mu = anchor_to_mu

    @classmethod
    def from_config(cls, cfg: ComoSVCConfig) -> "EDM":
        """From ``model.comosvc`` (sigma_data, sigma_min, sigma_max, rho, P_mean, P_std,
        anchor_to_mu)."""
        return cls(cfg.sigma_data, cfg.sigma_min, cfg.sigma_max, cfg.rho, cfg.P_mean, cfg.P_std,
                   cfg.anchor_to_mu)

    # Preconditioning (Karras Table 1; c_skip and c_out from Song et al. 2023, Appendix C).
    def c_skip(self, sigma: torch.Tensor) -> torch.Tensor:
        return self.sigma_data ** 2 / ((sigma - self.sigma_min) ** 2 + self.sigma_data ** 2)

    def c_out(self, sigma: torch.Tensor) -> torch.Tensor:
        scale = (sigma ** 2 + self.sigma_data ** 2).sqrt()
        return (sigma - self.sigma_min) * self.sigma_data / scale

    def c_in(self, sigma: torch.Tensor) -> torch.Tensor:
        return 1.0 / (sigma ** 2 + self.sigma_data ** 2).sqrt()

    def c_noise(self, sigma: torch.Tensor) -> torch.Tensor:
        return sigma.log() / 4.0

    def loss_weight(self, sigma: torch.Tensor) -> torch.Tensor:
        """lambda(sigma) = (sigma^2 + sigma_data^2) / (sigma sigma_data)^2 (Karras Table 1)."""
        return (sigma ** 2 + self.sigma_data ** 2) / (sigma * self.sigma_data) ** 2

    def denoise(self, net: Network, x: torch.Tensor, sigma: torch.Tensor | float,
                mu: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """D_theta(x; sigma) = c_skip x + c_out F(c_in x, c_noise; mu) (Karras eq. 7), plus
        (1 - c_skip) mu when ``anchor_to_mu`` (module docstring).

        Returns: (B, n_mel, T) estimate of the clean mel y; padded frames keep c_skip * x."""
        s = _per_item(sigma, x)
        f = net(self.c_in(s) * x, self.c_noise(s).reshape(-1), mu, mask)
        c_skip = self.c_skip(s)
        d = c_skip * x + self.c_out(s) * f
        return d + (1.0 - c_skip) * mu if self.anchor_to_mu else d

    @staticmethod
    def add_noise(y: torch.Tensor, sigma: torch.Tensor | float, mu: torch.Tensor,
                  eps: torch.Tensor) -> torch.Tensor:
        """x = y + sigma (eps + mu): Gaussian noise of mean sigma * mu and std sigma."""
        return y + _per_item(sigma, y) * (eps + mu)

    def loss(self, net: Network, y: torch.Tensor, mu: torch.Tensor, mask: torch.Tensor,
             generator: torch.Generator | None = None) -> torch.Tensor:
        """EDM training loss: mean over the real (frame, bin) cells of
        lambda(sigma) (D(x; sigma) - y)^2, one sigma per utterance with
        ln(sigma) ~ N(P_mean, P_std^2) and x = y + sigma (eps + mu).

        Returns: scalar tensor. ``generator`` (on y's device) makes the draws reproducible."""
        return self.loss_and_denoised(net, y, mu, mask, generator)[0]

    def loss_and_denoised(self, net: Network, y: torch.Tensor, mu: torch.Tensor,
                          mask: torch.Tensor, generator: torch.Generator | None = None
                          ) -> tuple[torch.Tensor, torch.Tensor]:
        """:meth:`loss` and the denoised mel D(x; sigma) (B, n_mel, T) it was computed from."""
        b = y.shape[0]
        z = torch.randn(b, device=y.device, dtype=y.dtype, **seeded(generator))
        sigma = (self.P_mean + self.P_std * z).exp()
        eps = torch.randn(y.shape, device=y.device, dtype=y.dtype, **seeded(generator))
        d = self.denoise(net, self.add_noise(y, sigma, mu, eps), sigma, mu, mask)
        err = _per_item(self.loss_weight(sigma), y) * (d - y) ** 2
        m = mask[:, None, :].to(y.dtype)
        return (err * m).sum() / (m.sum() * y.shape[1]).clamp(min=1.0), d

    def ode_derivative(self, net: Network, x: torch.Tensor, sigma: torch.Tensor | float,
                       mu: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """dx/dsigma = (x - D(x; sigma)) / sigma of the probability-flow ODE (Karras eq. 3)."""
        return (x - self.denoise(net, x, sigma, mu, mask)) / _per_item(sigma, x)

    def euler_step(self, net: Network, x: torch.Tensor, sigma: torch.Tensor | float,
                   sigma_next: torch.Tensor | float, mu: torch.Tensor,
                   mask: torch.Tensor) -> torch.Tensor:
        """x + (sigma_next - sigma) dx/dsigma(x, sigma): one Euler step (1 network evaluation)."""
        h = _per_item(sigma_next, x) - _per_item(sigma, x)
        return x + h * self.ode_derivative(net, x, sigma, mu, mask)

    def heun_step(self, net: Network, x: torch.Tensor, sigma: torch.Tensor | float,
                  sigma_next: torch.Tensor | float, mu: torch.Tensor,
                  mask: torch.Tensor) -> torch.Tensor:
        """One step of Heun's 2nd-order method from sigma to sigma_next >= sigma_min (Karras
        Algorithm 1, lines 5-8; 2 network evaluations): the mean of the slopes at both ends of an
        Euler step. Items whose sigma_next is sigma_min take the Euler step: D(x; sigma_min) = x
        makes the slope there zero by construction, not an estimate of the ODE's."""
        s_next = _per_item(sigma_next, x)
        h = s_next - _per_item(sigma, x)
        d = self.ode_derivative(net, x, sigma, mu, mask)
        x_euler = x + h * d
        d_next = self.ode_derivative(net, x_euler, sigma_next, mu, mask)
        at_min = s_next <= self.sigma_min * (1.0 + SIGMA_MIN_RTOL)
        return x + h * 0.5 * (d + torch.where(at_min, d, d_next))

    def sample(self, net: Network, mu: torch.Tensor, mask: torch.Tensor, steps: int,
               sampler: str = "heun", generator: torch.Generator | None = None,
               sigma_start: float | None = None) -> torch.Tensor:
        """Deterministic PF-ODE sampling: ``steps`` solver steps over the (steps + 1)-level Karras
        grid from x = sigma_max (eps + mu) down to sigma_min.

        Shallow diffusion (``sigma_start`` below sigma_max; Liu et al. 2022, DiffSinger, section
        3.3; so-vits-svc 4.1's shallow diffusion): the grid runs from sigma_start instead, starting
        at the coarse mel noised to that level, x = mu + sigma_start (eps + mu), i.e. the forward
        process applied to mu as the estimate of the clean mel.

        The result is x(sigma_min), which equals D(x; sigma_min) by the boundary condition, so the
        final jump to sigma = 0 of Karras Algorithm 1 is the identity here and is skipped. For the
        same reason the slope at sigma_min carries no information (D is the identity there), so
        the step into sigma_min is an Euler step: network evaluations are ``steps`` (Euler) or
        2 * steps - 1 (Heun).
        The trajectory x is kept in at least float32 (a half-precision mu is cast), also when the network runs under
        autocast.
        Returns: (B, n_mel, T), zero on padded frames.
        Raises: ValueError for an unknown sampler, steps < 1 or sigma_start outside
        (sigma_min, sigma_max].
        """
        if sampler not in ("heun", "euler"):
            raise ValueError(f"unknown sampler {sampler!r} (heun or euler)")
        if steps < 1:
            raise ValueError(f"sampling needs steps >= 1, got {steps}")
        start = self.sigma_max if sigma_start is None else sigma_start
        if not self.sigma_min < start <= self.sigma_max:
            raise ValueError(f"sigma_start = {start} must lie in (sigma_min, sigma_max] = "
                             f"({self.sigma_min}, {self.sigma_max}]")
        sigmas = karras_sigmas(steps + 1, self.sigma_min, start, self.rho).tolist()
        mu = mu.to(torch.promote_types(mu.dtype, torch.float32))
        m = mask[:, None, :].to(mu.dtype)
        eps = torch.randn(mu.shape, generator=generator, device=mu.device, dtype=mu.dtype)
        y0 = torch.zeros_like(mu) if sigma_start is None else mu
        x = self.add_noise(y0, sigmas[0], mu, eps) * m
        for i, (sigma, sigma_next) in enumerate(zip(sigmas[:-1], sigmas[1:])):
            # The step into sigma_min is Euler either way (see heun_step); this spares its
            # wasted second evaluation.
            step = self.heun_step if sampler == "heun" and i < steps - 1 else self.euler_step
            x = step(net, x, sigma, sigma_next, mu, mask)
        return x * m
