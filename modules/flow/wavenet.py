"""The non-causal WaveNet stack that WaveGlow (Prenger et al. 2019, sec. 2.2) and VITS (Kim et al.
2021, "Conditional Variational Autoencoder with Adversarial Learning for End-to-End Text-to-Speech",
appendix B) use in their posterior encoder and coupling layers. For layer i (dilation r^i):

    a = DilatedConv_i(x) + G_i(g)                    (G: one 1x1 convolution of the global
    y = tanh(a[:C]) * sigmoid(a[C:])                   condition, split into per-layer slices)
    r, s = split(Conv1x1_i(y))                       (the last layer has only a skip part)
    x = (x + r) * mask;    out += s

and the stack returns ``out * mask``. Layout: (batch, channels, frames).
"""
from __future__ import annotations

import torch
from torch import nn


class WaveNet(nn.Module):
    """Gated dilated-convolution stack with skip sums.

    Args:
        hidden: channels C (input and output).
        kernel_size: odd kernel of the dilated convolutions.
        dilation_rate: layer i has dilation ``dilation_rate ** i``.
        n_layers: number of layers.
        gin_channels: width of the global condition g (0: none).
        dropout: on the gated activations.
    Shapes: x (B, C, T), mask (B, 1, T), g (B, gin, 1) -> (B, C, T).
    """

    def __init__(self, hidden: int, kernel_size: int, dilation_rate: int, n_layers: int,
                 gin_channels: int = 0, dropout: float = 0.0):
        super().__init__()
        self.hidden, self.n_layers = hidden, n_layers
        self.in_layers = nn.ModuleList()
        self.res_skip_layers = nn.ModuleList()
        for i in range(n_layers):
            d = dilation_rate ** i
            self.in_layers.append(nn.Conv1d(hidden, 2 * hidden, kernel_size, dilation=d,
                                            padding=(kernel_size * d - d) // 2))
            out = 2 * hidden if i < n_layers - 1 else hidden
            self.res_skip_layers.append(nn.Conv1d(hidden, out, 1))
        self.cond_layer = nn.Conv1d(gin_channels, 2 * hidden * n_layers, 1) if gin_channels else None
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, mask: torch.Tensor, g: torch.Tensor | None = None) -> torch.Tensor:
        c = self.hidden
        out = torch.zeros_like(x)
        cond = self.cond_layer(g) if g is not None and self.cond_layer is not None else None
        for i, (conv, res_skip) in enumerate(zip(self.in_layers, self.res_skip_layers)):
            a = conv(x)
            if cond is not None:
                a = a + cond[:, 2 * c * i:2 * c * (i + 1)]
            y = self.dropout(torch.tanh(a[:, :c]) * torch.sigmoid(a[:, c:]))
            rs = res_skip(y)
            if i < self.n_layers - 1:
                x = (x + rs[:, :c]) * mask
                out = out + rs[:, c:]
            else:
                out = out + rs
        return out * mask
