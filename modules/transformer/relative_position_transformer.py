"""The frame-level Transformer encoder of DiffComoSVC (Amphion calls it "conformer"; it has no
convolution module, so it is a Transformer): the Glow-TTS / VITS text-encoder stack (Kim et al.
2020, 2021) used by Grad-TTS (Popov et al. 2021) and CoMoSpeech (Ye et al. 2023). Each layer is

    x = LayerNorm(x + Dropout(RelativeSelfAttention(x)))      (post-norm, Vaswani et al. 2017)
    x = LayerNorm(x + Dropout(ConvFeedForward(x)))

with relative-position attention (:mod:`modules.transformer.relative_attention`) and a feed-forward
of two 1-D convolutions over time (kernel ``kernel_size``, ReLU) in place of the position-wise MLP.
Padded frames are zeroed before every convolution and never attended to, so the output on real
frames does not depend on how much padding follows them.
"""
from __future__ import annotations

import torch
from torch import nn

from modules.transformer.relative_attention import RelativePositionMultiHeadAttention


class ConvFeedForward(nn.Module):
    """Conv1d(C -> F, k) -> ReLU -> Dropout -> Conv1d(F -> C, k), 'same' padding over time.

    Args: channels C, filter_channels F, kernel_size k (odd), dropout.
    Raises: ValueError for an even kernel_size (no symmetric 'same' padding).
    """

    def __init__(self, channels: int, filter_channels: int, kernel_size: int, dropout: float):
        super().__init__()
        if kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be odd, got {kernel_size}")
        self.conv_in = nn.Conv1d(channels, filter_channels, kernel_size, padding=kernel_size // 2)
        self.conv_out = nn.Conv1d(filter_channels, channels, kernel_size, padding=kernel_size // 2)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Args: x (B, T, C); mask (B, T) bool. Returns (B, T, C), zero on padded frames."""
        m = mask[:, None, :].to(x.dtype)
        h = self.conv_in(x.transpose(1, 2) * m)
        h = self.dropout(torch.relu(h))
        return (self.conv_out(h * m) * m).transpose(1, 2)


class RelativePositionTransformer(nn.Module):
    """A stack of post-norm Transformer layers with relative-position self-attention and
    convolutional feed-forward.

    Args:
        channels: width C; n_layers; n_heads; filter_channels: feed-forward width;
        kernel_size: feed-forward kernel over time; dropout: on attention probabilities, after
        attention and inside / after the feed-forward; window_size: relative-attention window.
    """

    def __init__(self, channels: int, n_layers: int, n_heads: int, filter_channels: int,
                 kernel_size: int, dropout: float, window_size: int):
        super().__init__()
        self.attention = nn.ModuleList(
            RelativePositionMultiHeadAttention(channels, n_heads, window_size, dropout)
            for _ in range(n_layers))
        self.feed_forward = nn.ModuleList(
            ConvFeedForward(channels, filter_channels, kernel_size, dropout)
            for _ in range(n_layers))
        self.norm_attention = nn.ModuleList(nn.LayerNorm(channels) for _ in range(n_layers))
        self.norm_feed_forward = nn.ModuleList(nn.LayerNorm(channels) for _ in range(n_layers))
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Args: x (B, T, C); mask (B, T) bool, True = real frame. Returns (B, T, C), zero on
        padded frames."""
        m = mask[..., None].to(x.dtype)
        for attn, ffn, norm_a, norm_f in zip(self.attention, self.feed_forward,
                                             self.norm_attention, self.norm_feed_forward):
            x = x * m
            x = norm_a(x + self.dropout(attn(x, mask)))
            x = norm_f(x + self.dropout(ffn(x, mask)))
        return x * m
