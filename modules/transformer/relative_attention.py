"""Multi-head self-attention with learned relative-position embeddings on keys and values (Shaw,
Uszkoreit & Vaswani 2018, "Self-Attention with Relative Position Representations", eqs. 3-4), in the
windowed form of Glow-TTS / VITS (Kim et al. 2020, 2021): offsets j - i within +-window_size get an
embedding, offsets further away get none (Shaw et al. clip them to the window edge instead).

    e_ij = q_i . (k_j + a^K_{j-i}) / sqrt(d_k)          a^K_{j-i} = 0 when |j - i| > window
    z_i  = sum_j softmax_j(e_ij) (v_j + a^V_{j-i})

The embeddings are shared by all heads (VITS' ``heads_share``).
"""
from __future__ import annotations

import math

import torch
from torch import nn


class RelativePositionMultiHeadAttention(nn.Module):
    """Self-attention over frames with relative-position keys and values.

    Args:
        channels: model width C (divisible by n_heads).
        n_heads: number of heads H; each has d_k = C / H channels.
        window_size: largest relative offset w with its own embedding (2w + 1 embeddings).
        dropout: dropout on the attention probabilities.
    Raises:
        ValueError: channels not divisible by n_heads, or window_size < 0.
    """

    def __init__(self, channels: int, n_heads: int, window_size: int, dropout: float = 0.0):
        super().__init__()
        if channels % n_heads:
            raise ValueError(f"channels ({channels}) must be divisible by n_heads ({n_heads})")
        if window_size < 0:
            raise ValueError(f"window_size must be >= 0, got {window_size}")
        self.n_heads, self.d_k, self.window = n_heads, channels // n_heads, window_size
        self.query = nn.Linear(channels, channels)
        self.key = nn.Linear(channels, channels)
        self.value = nn.Linear(channels, channels)
        self.out = nn.Linear(channels, channels)
        for layer in (self.query, self.key, self.value):
            nn.init.xavier_uniform_(layer.weight)
        std = self.d_k ** -0.5
        self.rel_key = nn.Parameter(torch.randn(2 * window_size + 1, self.d_k) * std)
        self.rel_value = nn.Parameter(torch.randn(2 * window_size + 1, self.d_k) * std)
        self.dropout = nn.Dropout(dropout)

    def _split(self, x: torch.Tensor) -> torch.Tensor:
        b, t, _ = x.shape
        return x.view(b, t, self.n_heads, self.d_k).transpose(1, 2)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Args: x (B, T, C); mask (B, T) bool, True = real frame (padded frames are never attended
        to). Returns: (B, T, C); rows of padded frames are meaningless (mask them)."""
        b, t, c = x.shape
        w = self.window
        q, k, v = self._split(self.query(x)), self._split(self.key(x)), self._split(self.value(x))
        pos = torch.arange(t, device=x.device)
        offset = pos[None, :] - pos[:, None]                                     # (T, T): j - i
        near = (offset.abs() <= w).to(q.dtype)
        rel_index = (offset.clamp(-w, w) + w).expand(b, self.n_heads, t, t)
        rel_logits = torch.gather(q @ self.rel_key.t(), -1, rel_index) * near   # (B, H, T, T)
        scores = (q @ k.transpose(-1, -2) + rel_logits) / math.sqrt(self.d_k)
        scores = scores.masked_fill(~mask[:, None, None, :], torch.finfo(scores.dtype).min)
        # float32 softmax (as CUDA autocast does; CPU autocast would keep bfloat16).
        probs = self.dropout(torch.softmax(scores, dim=-1, dtype=torch.float32).to(v.dtype))
        # Probability mass at each relative offset r - w for query i: probs[i, i + r - w].
        cols = pos[:, None] + torch.arange(2 * w + 1, device=x.device)[None, :] - w  # (T, 2w+1)
        inside = ((cols >= 0) & (cols < t)).to(q.dtype)
        cols = cols.clamp(0, t - 1).expand(b, self.n_heads, t, 2 * w + 1)
        probs_rel = torch.gather(probs, -1, cols) * inside                       # (B, H, T, 2w+1)
        z = probs @ v + probs_rel @ self.rel_value
        return self.out(z.transpose(1, 2).reshape(b, t, c))
