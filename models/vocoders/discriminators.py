"""The HiFi-GAN discriminators VITS and so-vits-svc train against (Kong et al. 2020, sec. 2.2-2.3):
the multi-period discriminator (MPD: the waveform folded into a 2-D map of ``period`` columns,
periods 2, 3, 5, 7, 11, strided (5, 1) convolutions 1-32-128-512-1024-1024) and one scale
discriminator on the raw waveform (grouped strided 1-D convolutions 1-16-64-256-1024-1024-1024,
as MelGAN's, Kumar et al. 2019). Leaky ReLU 0.1 after every convolution but the last.

Every sub-discriminator returns its flattened score map and the feature maps of all its layers
(for the feature-matching loss). ``max_channels`` (1024 in HiFi-GAN) scales every width by
max_channels / 1024, for small CPU runs. Layout: waveforms (B, 1, N).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import weight_norm

from models.vocoders.hifigan import LRELU_SLOPE

PERIODS = (2, 3, 5, 7, 11)


def _score(convs: nn.ModuleList, conv_post: nn.Module,
           x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """A sub-discriminator's body: each conv then leaky ReLU, the post conv; returns the flattened
    scores (B, *) and every layer's output (the feature maps of the feature-matching loss)."""
    fmaps = []
    for conv in convs:
        x = F.leaky_relu(conv(x), LRELU_SLOPE)
        fmaps.append(x)
    x = conv_post(x)
    fmaps.append(x)
    return x.flatten(1), fmaps


class PeriodDiscriminator(nn.Module):
    """MPD sub-discriminator of one period: reflect-pad N to a multiple of ``period``, view as
    (B, 1, N / period, period), five (5, 1) convolutions (stride 3 but the last) and a (3, 1) one.

    Shapes: (B, 1, N) -> scores (B, *), feature maps [(B, C, H, period), ...]."""

    def __init__(self, period: int, kernel_size: int = 5, stride: int = 3, max_channels: int = 1024):
        super().__init__()
        self.period = period
        widths = [1] + [max(1, w * max_channels // 1024) for w in (32, 128, 512, 1024, 1024)]
        pad = (kernel_size - 1) // 2
        self.convs = nn.ModuleList(
            weight_norm(nn.Conv2d(cin, cout, (kernel_size, 1), (stride if i < 4 else 1, 1),
                                  padding=(pad, 0)))
            for i, (cin, cout) in enumerate(zip(widths[:-1], widths[1:])))
        self.conv_post = weight_norm(nn.Conv2d(widths[-1], 1, (3, 1), 1, padding=(1, 0)))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        b, c, n = x.shape
        if n % self.period:
            x = F.pad(x, (0, self.period - n % self.period), "reflect")
        return _score(self.convs, self.conv_post, x.view(b, c, -1, self.period))


class ScaleDiscriminator(nn.Module):
    """The scale sub-discriminator on the raw waveform (module doc).

    Shapes: (B, 1, N) -> scores (B, *), feature maps [(B, C, N'), ...]."""

    def __init__(self, max_channels: int = 1024):
        super().__init__()
        layers = [(1, 16, 15, 1, 1, 7), (16, 64, 41, 4, 4, 20), (64, 256, 41, 4, 16, 20),
                  (256, 1024, 41, 4, 64, 20), (1024, 1024, 41, 4, 256, 20), (1024, 1024, 5, 1, 1, 2)]
        width = lambda c: c if c == 1 else max(1, c * max_channels // 1024)  # noqa: E731
        self.convs = nn.ModuleList(
            weight_norm(nn.Conv1d(width(cin), width(cout), k, s, padding=p,
                                  groups=min(g, width(cin), width(cout))))
            for cin, cout, k, s, g, p in layers)
        self.conv_post = weight_norm(nn.Conv1d(width(1024), 1, 3, 1, padding=1))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        return _score(self.convs, self.conv_post, x)


class VitsDiscriminator(nn.Module):
    """One scale discriminator plus one period discriminator per period (VITS' ensemble).

    Shapes: y, y_hat (B, 1, N) -> (scores of y, scores of y_hat, feature maps of y, of y_hat),
    each a list with one entry per sub-discriminator."""

    def __init__(self, periods: tuple[int, ...] = PERIODS, max_channels: int = 1024):
        super().__init__()
        self.discriminators = nn.ModuleList(
            [ScaleDiscriminator(max_channels)]
            + [PeriodDiscriminator(p, max_channels=max_channels) for p in periods])

    def forward(self, y: torch.Tensor, y_hat: torch.Tensor):
        real, fake, fmap_real, fmap_fake = [], [], [], []
        for d in self.discriminators:
            score, fmap = d(y)
            real.append(score)
            fmap_real.append(fmap)
            score, fmap = d(y_hat)
            fake.append(score)
            fmap_fake.append(fmap)
        return real, fake, fmap_real, fmap_fake
