"""Masked reconstruction losses of the coarse mel mu (the "prior loss" and the SSIM loss of CoMoSVC,
Lu et al. 2024). Mels are (B, n_mel, T), min-max normalised to [-1, 1]; masks (B, T) bool. Both
are computed in float32, also inside a mixed-precision forward (utils.precision.float32)."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from utils.precision import float32

SSIM_WINDOW = 11
SSIM_SIGMA = 1.5
SSIM_K1, SSIM_K2 = 0.01, 0.03


@float32
def masked_mse(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of (pred - target)^2 over the real (frame, bin) cells. Returns a scalar tensor."""
    m = mask[:, None, :].to(pred.dtype)
    return (((pred - target) ** 2) * m).sum() / (m.sum() * pred.shape[1]).clamp(min=1.0)


def _gaussian_blur(x: torch.Tensor, window: torch.Tensor) -> torch.Tensor:
    """Separable Gaussian filter over both axes of (B, 1, H, W), zero padding ('same' size)."""
    k = window.numel()
    x = F.conv2d(x, window.view(1, 1, k, 1), padding=(k // 2, 0))
    return F.conv2d(x, window.view(1, 1, 1, k), padding=(0, k // 2))


@float32
def masked_ssim_loss(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """1 - mean SSIM over the real frames, the mel taken as a one-channel image (bins x frames).

    SSIM of Wang, Bovik, Sheikh & Simoncelli 2004 (eq. 13) with their constants: an 11 x 11 Gaussian
    window (sigma 1.5 cells), C1 = (0.01 L)^2, C2 = (0.03 L)^2. Mels in [-1, 1] are mapped to [0, 1]
    (L = 1) first; padded frames of both inputs are set to the same value so they never differ.

    Args: pred, target (B, n_mel, T); mask (B, T) bool. Returns a scalar tensor in [0, 2].
    """
    m = mask[:, None, :].to(pred.dtype)
    a = ((pred * m + 1.0) / 2.0)[:, None]
    b = ((target * m + 1.0) / 2.0)[:, None]
    r = torch.arange(SSIM_WINDOW, device=pred.device, dtype=pred.dtype) - SSIM_WINDOW // 2
    window = torch.exp(-(r ** 2) / (2 * SSIM_SIGMA ** 2))
    window = window / window.sum()
    mu_a, mu_b = _gaussian_blur(a, window), _gaussian_blur(b, window)
    var_a = _gaussian_blur(a * a, window) - mu_a ** 2
    var_b = _gaussian_blur(b * b, window) - mu_b ** 2
    cov = _gaussian_blur(a * b, window) - mu_a * mu_b
    c1, c2 = SSIM_K1 ** 2, SSIM_K2 ** 2
    ssim = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a ** 2 + mu_b ** 2 + c1)
                                                        * (var_a + var_b + c2))
    m4 = m[:, None]
    return 1.0 - (ssim * m4).sum() / (m4.sum() * pred.shape[1]).clamp(min=1.0)
