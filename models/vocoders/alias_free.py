"""BigVGAN's anti-aliased periodic activations (Lee et al. 2023, "BigVGAN: A Universal Neural
Vocoder with Large-Scale Training", sec. 3.2): the signal is upsampled 2x with a Kaiser-windowed
sinc low-pass, passed through Snake / SnakeBeta, low-passed again and decimated 2x, so the
harmonics the nonlinearity creates above the original Nyquist do not alias back.

Layout: every module maps (batch, channels, time) to the same shape. Attribute names (``act``,
``upsample.filter``, ``downsample.lowpass.filter``, ``alpha``, ``beta``) follow the released
checkpoints so their state dicts load as they are.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

# Snake's guard against dividing by a zero frequency parameter (BigVGAN's released value).
_EPS = 1e-9


class Snake(nn.Module):
    """Snake activation x + sin^2(alpha x) / alpha (Liu Ziyin et al. 2020, "Neural networks fail to
    learn periodic functions and how to fix it", eq. 3) with one alpha per channel.

    Args: channels: C; log_scale: the parameter stores log(alpha) (BigVGAN's ``snake_logscale``).
    Shapes: (B, C, T) -> (B, C, T).
    """

    def __init__(self, channels: int, log_scale: bool = True):
        super().__init__()
        self.log_scale = log_scale
        self.alpha = nn.Parameter(torch.zeros(channels) if log_scale else torch.ones(channels))

    def _positive(self, p: torch.Tensor) -> torch.Tensor:
        p = p[None, :, None]
        return p.exp() if self.log_scale else p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        alpha = self._positive(self.alpha)
        return x + torch.sin(alpha * x).pow(2) / (alpha + _EPS)


class SnakeBeta(Snake):
    """SnakeBeta x + sin^2(alpha x) / beta: Snake with the magnitude of the periodic part decoupled
    from its frequency (BigVGAN, sec. 3.2). Per-channel alpha and beta.

    Shapes: (B, C, T) -> (B, C, T).
    """

    def __init__(self, channels: int, log_scale: bool = True):
        super().__init__(channels, log_scale)
        self.beta = nn.Parameter(torch.zeros(channels) if log_scale else torch.ones(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        alpha, beta = self._positive(self.alpha), self._positive(self.beta)
        return x + torch.sin(alpha * x).pow(2) / (beta + _EPS)


def kaiser_sinc_filter(cutoff: float, half_width: float, kernel_size: int) -> torch.Tensor:
    """Windowed-sinc low-pass filter, shape (1, 1, kernel_size), taps summing to 1.

    Args: cutoff and half_width (transition half-width) as fractions of the sample rate; an even
    kernel_size puts the taps at half-integer times.
    The Kaiser beta comes from the attenuation A = 2.285 (K/2 - 1) pi (4 half_width) + 7.95 dB with
    Kaiser's empirical rule (Oppenheim & Schafer, Discrete-Time Signal Processing, eq. 7.62-7.63),
    the design used by BigVGAN's alias-free activations.
    """
    half = kernel_size // 2
    attenuation = 2.285 * (half - 1) * math.pi * (4 * half_width) + 7.95
    if attenuation > 50:
        beta = 0.1102 * (attenuation - 8.7)
    elif attenuation >= 21:
        beta = 0.5842 * (attenuation - 21) ** 0.4 + 0.07886 * (attenuation - 21)
    else:
        beta = 0.0
    window = torch.kaiser_window(kernel_size, periodic=False, beta=beta)
    offset = 0.5 if kernel_size % 2 == 0 else 0.0
    t = torch.arange(kernel_size, dtype=torch.float32) - half + offset
    taps = 2 * cutoff * window * torch.sinc(2 * cutoff * t)
    return (taps / taps.sum()).view(1, 1, kernel_size)


class UpSample1d(nn.Module):
    """Upsample by ``ratio``: zero-stuffing transposed convolution with the low-pass filter (gain
    ``ratio``), edges replicate-padded. (B, C, T) -> (B, C, T * ratio)."""

    def __init__(self, ratio: int = 2, kernel_size: int = 12):
        super().__init__()
        self.ratio = ratio
        self.pad = kernel_size // ratio - 1
        self.crop_left = self.pad * ratio + (kernel_size - ratio) // 2
        self.crop_right = self.pad * ratio + (kernel_size - ratio + 1) // 2
        self.register_buffer("filter", kaiser_sinc_filter(0.5 / ratio, 0.6 / ratio, kernel_size))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        channels = x.shape[1]
        x = F.pad(x, (self.pad, self.pad), mode="replicate")
        x = self.ratio * F.conv_transpose1d(x, self.filter.expand(channels, -1, -1),
                                            stride=self.ratio, groups=channels)
        return x[..., self.crop_left:x.shape[-1] - self.crop_right]


class LowPassFilter1d(nn.Module):
    """Low-pass filtering with replicate padding, then keeping every ``stride``-th sample.
    (B, C, T) -> (B, C, T // stride)."""

    def __init__(self, cutoff: float, half_width: float, stride: int, kernel_size: int = 12):
        super().__init__()
        even = kernel_size % 2 == 0
        self.pad_left = kernel_size // 2 - int(even)
        self.pad_right = kernel_size // 2
        self.stride = stride
        self.register_buffer("filter", kaiser_sinc_filter(cutoff, half_width, kernel_size))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        channels = x.shape[1]
        x = F.pad(x, (self.pad_left, self.pad_right), mode="replicate")
        return F.conv1d(x, self.filter.expand(channels, -1, -1), stride=self.stride,
                        groups=channels)


class DownSample1d(nn.Module):
    """Anti-aliasing low-pass at the new Nyquist, then decimation by ``ratio``.
    (B, C, T) -> (B, C, T // ratio)."""

    def __init__(self, ratio: int = 2, kernel_size: int = 12):
        super().__init__()
        self.lowpass = LowPassFilter1d(0.5 / ratio, 0.6 / ratio, ratio, kernel_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.lowpass(x)


class Activation1d(nn.Module):
    """Anti-aliased activation: upsample 2x, ``act``, downsample 2x. (B, C, T) -> (B, C, T)."""

    def __init__(self, act: nn.Module, ratio: int = 2, kernel_size: int = 12):
        super().__init__()
        self.act = act
        self.upsample = UpSample1d(ratio, kernel_size)
        self.downsample = DownSample1d(ratio, kernel_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.downsample(self.act(self.upsample(x)))
