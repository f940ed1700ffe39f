"""Masked reconstruction losses of the coarse mel mu (the "prior loss" and the SSIM loss of CoMoSVC,
Lu et al. 2024). Mels are (B, n_mel, T), min-max normalised to [-1, 1]; masks (B, T) bool. Both
are computed in float32, also inside a mixed-precision forward (utils.precision.float32).

Each loss has two forms (``train.prior_loss_form``, ``train.ssim_form``): Amphion's effective one
(the default) and Cantor's. Both forms mask padded frames out of the mean.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from utils.precision import float32

SSIM_WINDOW = 11
SSIM_SIGMA = 1.5
SSIM_K1, SSIM_K2 = 0.01, 0.03
# Amphion's SSIM adds this to both mels (utils/ssim.py, forward(..., bias=6.0)).
AMPHION_SSIM_BIAS = 6.0
LOG_2PI = math.log(2.0 * math.pi)


@float32
def masked_mse(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of (pred - target)^2 over the real (frame, bin) cells. Returns a scalar tensor."""
    m = mask[:, None, :].to(pred.dtype)
    return (((pred - target) ** 2) * m).sum() / (m.sum() * pred.shape[1]).clamp(min=1.0)


@float32
def prior_loss(mu: torch.Tensor, mel: torch.Tensor, mask: torch.Tensor,
               form: str = "amphion") -> torch.Tensor:
    """The prior loss between the coarse mel mu and the mel (scalar tensor).

    ``"mse"``: the mean squared error over the real cells (:func:`masked_mse`).
    ``"amphion"``: Amphion's computation (models/svc/comosvc/comosvc.py, ``compute_loss``): the
    Gaussian negative log-likelihood of Grad-TTS (Popov et al. 2021, eq. 14),
    0.5 * sum((mel - mu)^2 + ln 2 pi) * mask / (sum(mask) * n_mel) with the mask already repeated
    over the n_mel bins, so its sum counts cells and the division by n_mel comes on top:
    (0.5 * MSE + 0.5 ln 2 pi) / n_mel. Its gradient is 1 / (2 n_mel) of the MSE's (1/200 at 100
    mels).

    Args: mu, mel (B, n_mel, T); mask (B, T) bool; form "amphion" or "mse".
    Raises: ValueError for another form.
    """
    mse = masked_mse(mu, mel, mask)
    if form == "mse":
        return mse
    if form == "amphion":
        return 0.5 * (mse + LOG_2PI) / mel.shape[1]
    raise ValueError(f"unknown prior loss form {form!r} (amphion or mse)")


def _gaussian_blur(x: torch.Tensor, window: torch.Tensor) -> torch.Tensor:
    """Separable Gaussian filter over both axes of (B, 1, H, W), zero padding ('same' size)."""
    k = window.numel()
    x = F.conv2d(x, window.view(1, 1, k, 1), padding=(k // 2, 0))
    return F.conv2d(x, window.view(1, 1, 1, k), padding=(0, k // 2))


@float32
def masked_ssim_loss(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor,
                     form: str = "amphion") -> torch.Tensor:
    """1 - mean SSIM over the real frames, the mel taken as a one-channel image (bins x frames).

    SSIM of Wang, Bovik, Sheikh & Simoncelli 2004 (eq. 13) with their constants: an 11 x 11 Gaussian
    window (sigma 1.5 cells), C1 = 0.01^2, C2 = 0.03^2 (dynamic range L = 1). The mels are first
    mapped by the form:

    - ``"amphion"``: x + 6 (Amphion's utils/ssim.py, ``bias=6.0``): mels in [5, 7], so the
      luminance term (2 m_a m_b + C1) / (m_a^2 + m_b^2 + C1) stays within about 1 % of 1 for
      local mean differences up to 0.8 and the loss is nearly blind to them; the structure terms see the
      mel's own variances;
    - ``"unit"``: (x + 1) / 2, the [0, 1] images the constants were chosen for (Cantor's form).

    Padded frames of both inputs are set to the same value so they never differ, and the mean runs
    over the real frames only (Amphion averages over the padding too).

    Args: pred, target (B, n_mel, T); mask (B, T) bool; form "amphion" or "unit".
    Returns: a scalar tensor in [0, 2].
    Raises: ValueError for another form.
    """
    m = mask[:, None, :].to(pred.dtype)
    if form == "amphion":
        a, b = (pred * m + AMPHION_SSIM_BIAS)[:, None], (target * m + AMPHION_SSIM_BIAS)[:, None]
    elif form == "unit":
        a, b = ((pred * m + 1.0) / 2.0)[:, None], ((target * m + 1.0) / 2.0)[:, None]
    else:
        raise ValueError(f"unknown SSIM form {form!r} (amphion or unit)")
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
