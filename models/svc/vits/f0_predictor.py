"""so-vits-svc 4.1's F0 predictor (``F0Decoder``, "automatic f0 prediction"): from the prior's input
features and the source's pitch contour with its mean removed, predict the pitch the target singer
would sing, on the scale

    lf0 = 2595 log10(1 + f0 / 700) / 500        (the mel scale of f0, divided by 500)

Training regresses lf0 of the real take (mean squared error over real frames, weight
``train.vits.c_lf0``; the input features are detached, so the predictor does not shape the prior).
The contour given to it is lf0 minus its mean over voiced frames, times a random factor in
[0.8, 1.2] per utterance while training (so-vits-svc's ``normalize_f0``), so the predictor has to
take the level, and part of the range, from the singer. At conversion (``inference.vits.
predict_f0``) the prediction replaces the source's F0: speech, or a singer far from the target's
range, comes out in the target's range without a key shift.

so-vits-svc's predictor runs a causal Transformer (its ``attentions.FFT``); this one runs the prior's
relative-position Transformer (:mod:`modules.transformer.relative_position_transformer`), so an
imported so-vits-svc model's ``f0_decoder`` weights do not map onto it.
"""
from __future__ import annotations

import torch
from torch import nn

from modules.transformer.relative_position_transformer import RelativePositionTransformer

# so-vits-svc: kernel 3 for the pre-nets over time; the prior's attention window.
PRENET_KERNEL = 3
ATTENTION_WINDOW = 4
# Per-utterance scale of the normalised contour while training (so-vits-svc's normalize_f0).
RANDOM_SCALE = (0.8, 1.2)


def f0_to_lf0(f0: torch.Tensor) -> torch.Tensor:
    """Hz -> lf0 = 2595 log10(1 + f0 / 700) / 500 (0 Hz -> 0). Any shape."""
    return 2595.0 * torch.log10(1.0 + f0 / 700.0) / 500.0


def lf0_to_f0(lf0: torch.Tensor) -> torch.Tensor:
    """The inverse of :func:`f0_to_lf0`: 700 (10^(500 lf0 / 2595) - 1) Hz. Any shape."""
    return 700.0 * (torch.pow(10.0, lf0 * 500.0 / 2595.0) - 1.0)


def normalise_lf0(lf0: torch.Tensor, voiced: torch.Tensor, mask: torch.Tensor,
                  random_scale: bool) -> torch.Tensor:
    """lf0 minus its mean over voiced frames (times a random factor in RANDOM_SCALE per row when
    ``random_scale``), zero on padded frames; a row with no voiced frame keeps mean 0.

    Args: lf0 (B, T); voiced, mask (B, T) bool. Returns: (B, T).
    """
    v = voiced.to(lf0.dtype)
    mean = (lf0 * v).sum(1, keepdim=True) / v.sum(1, keepdim=True).clamp(min=1)
    scale = torch.ones_like(mean)
    if random_scale:
        scale = scale.uniform_(*RANDOM_SCALE)
    return (lf0 - mean) * scale * mask.to(lf0.dtype)


class F0Predictor(nn.Module):
    """lf0 of the target singer from the prior's input features x, the normalised source contour
    and the singer embedding g (module doc):

        h = Conv_k3(x + Conv_1x1(g) + Conv_k3(contour)) -> Transformer -> Conv_1x1 -> lf0

    Args: channels: width of x (``model.vits.hidden_channels``); gin_channels: width of g;
        n_layers, n_heads, filter_channels, kernel_size, dropout: the Transformer's (the prior's).
    Shapes: x (B, C, T), contour (B, T), mask (B, T) bool, g (B, gin, 1) -> lf0 (B, T), zero on
        padded frames.
    """

    def __init__(self, channels: int, gin_channels: int, n_layers: int, n_heads: int,
                 filter_channels: int, kernel_size: int, dropout: float):
        super().__init__()
        pad = PRENET_KERNEL // 2
        self.contour_pre = nn.Conv1d(1, channels, PRENET_KERNEL, padding=pad)
        self.singer_pre = nn.Conv1d(gin_channels, channels, 1)
        self.pre = nn.Conv1d(channels, channels, PRENET_KERNEL, padding=pad)
        self.encoder = RelativePositionTransformer(channels, n_layers, n_heads, filter_channels,
                                                   kernel_size, dropout, ATTENTION_WINDOW)
        self.proj = nn.Conv1d(channels, 1, 1)

    def forward(self, x: torch.Tensor, contour: torch.Tensor, mask: torch.Tensor,
                g: torch.Tensor) -> torch.Tensor:
        m = mask[:, None, :].to(x.dtype)
        h = x + self.singer_pre(g) + self.contour_pre(contour[:, None])
        h = self.pre(h * m) * m
        h = self.encoder(h.transpose(1, 2), mask).transpose(1, 2)
        return (self.proj(h) * m)[:, 0]
