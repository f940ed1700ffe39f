"""The VITS training losses (Kim et al. 2021, eqs. 2, 4, 6-9; the adversarial terms are HiFi-GAN's
least-squares GAN, Kong et al. 2020 eqs. 1-3, after Mao et al. 2017):

- KL between the posterior q(z|x) = N(m_q, e^{2 logs_q}) sampled at z, mapped by the flow to z_p,
  and the prior N(m_p, e^{2 logs_p}), averaged over real frames (sum over channels):
  sum[logs_p - logs_q - 1/2 + (z_p - m_p)^2 e^{-2 logs_p} / 2] / n_frames  (a one-sample estimate:
  the posterior's entropy term -logs_q - 1/2 is exact, the cross-entropy is evaluated at z_p);
- discriminator: sum_k mean((1 - D_k(y))^2) + mean(D_k(y_hat)^2);
- generator adversarial: sum_k mean((1 - D_k(y_hat))^2);
- feature matching: sum_k sum_l mean|F_kl(y) - F_kl(y_hat)| (real features detached);
- mel reconstruction: mean |mel(y) - mel(y_hat)| of the natural-log mels;
- F0 predictor (so-vits-svc 4.1): mean (lf0_pred - lf0)^2 over real frames.

so-vits-svc 4.1 weighs them 45 (mel), 1 (KL), 2 (feature matching), 1 (adversarial), 1 (lf0):
``train.vits`` in utils/schema.py.
"""
from __future__ import annotations

import torch


def kl_loss(z_p: torch.Tensor, logs_q: torch.Tensor, m_p: torch.Tensor, logs_p: torch.Tensor,
            mask: torch.Tensor) -> torch.Tensor:
    """Args: z_p, logs_q, m_p, logs_p (B, C, T); mask (B, 1, T) 1 = real frame.
    Returns: scalar, summed over channels and real frames, divided by the number of real frames
    (times nothing for C: VITS' normalisation by sum(mask) over (B, 1, T))."""
    kl = logs_p - logs_q - 0.5 + 0.5 * (z_p - m_p) ** 2 * torch.exp(-2.0 * logs_p)
    return (kl * mask).sum() / mask.sum()


def discriminator_loss(real: list[torch.Tensor], fake: list[torch.Tensor]) -> torch.Tensor:
    """Least-squares discriminator loss summed over sub-discriminators (module doc)."""
    return sum(torch.mean((1 - r) ** 2) + torch.mean(f ** 2) for r, f in zip(real, fake))


def generator_adversarial_loss(fake: list[torch.Tensor]) -> torch.Tensor:
    """Least-squares generator loss summed over sub-discriminators (module doc)."""
    return sum(torch.mean((1 - f) ** 2) for f in fake)


def feature_matching_loss(fmap_real: list[list[torch.Tensor]],
                          fmap_fake: list[list[torch.Tensor]]) -> torch.Tensor:
    """L1 between the discriminators' feature maps of real and generated audio, summed over
    sub-discriminators and layers (unweighted; VITS multiplies by 2 = ``train.vits.c_fm``)."""
    return sum(torch.mean(torch.abs(r.detach() - f))
               for fr, ff in zip(fmap_real, fmap_fake) for r, f in zip(fr, ff))


def lf0_loss(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean squared error of the F0 predictor over real frames.
    Args: pred, target (B, T) lf0 (models/svc/vits/f0_predictor.py); mask (B, 1, T) 1 = real frame.
    Returns: scalar."""
    m = mask[:, 0]
    return (((pred - target) ** 2) * m).sum() / m.sum().clamp(min=1)
