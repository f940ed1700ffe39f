"""The flow of VITS between the posterior latent z and the prior's space (Kim et al. 2021, sec.
2.5.2): a stack of volume-preserving affine couplings (Dinh et al. 2017, "Density estimation using
Real NVP", eq. 7 with the scale fixed to 1), each followed by a channel flip.

One coupling, x = [x_a, x_b] split over channels:

    m = Post(WaveNet(Pre(x_a) * mask, g)) * mask
    forward:  y = [x_a, x_b + m]            (log-determinant 0: "mean only")
    reverse:  x = [y_a, y_b - m]

Post starts at zero, so an untrained flow is the identity up to the flips. Layout: (batch,
channels, frames); mask (batch, 1, frames).
"""
from __future__ import annotations

import torch
from torch import nn

from modules.flow.wavenet import WaveNet


class ResidualCoupling(nn.Module):
    """One mean-only affine coupling (module doc).

    Args: channels (even); hidden; kernel_size; dilation_rate; n_layers of its WaveNet;
        gin_channels of the global condition (0: none).
    Shapes: x (B, channels, T) -> same.
    """

    def __init__(self, channels: int, hidden: int, kernel_size: int, dilation_rate: int,
                 n_layers: int, gin_channels: int = 0):
        super().__init__()
        if channels % 2:
            raise ValueError(f"coupling channels must be even, got {channels}")
        self.half = channels // 2
        self.pre = nn.Conv1d(self.half, hidden, 1)
        self.enc = WaveNet(hidden, kernel_size, dilation_rate, n_layers, gin_channels)
        self.post = nn.Conv1d(hidden, self.half, 1)
        nn.init.zeros_(self.post.weight)
        nn.init.zeros_(self.post.bias)

    def forward(self, x: torch.Tensor, mask: torch.Tensor, g: torch.Tensor | None = None,
                reverse: bool = False) -> torch.Tensor:
        xa, xb = x[:, :self.half], x[:, self.half:]
        m = self.post(self.enc(self.pre(xa) * mask, mask, g)) * mask
        xb = (xb - m) * mask if reverse else m + xb * mask
        return torch.cat([xa, xb], dim=1)


class ResidualCouplingFlow(nn.Module):
    """``n_flows`` couplings, each followed by a flip of the channel order; exactly invertible.

    Args: as :class:`ResidualCoupling`, plus n_flows.
    Shapes: x (B, channels, T), mask (B, 1, T), g (B, gin, 1) -> (B, channels, T).
    """

    def __init__(self, channels: int, hidden: int, kernel_size: int, dilation_rate: int,
                 n_layers: int, n_flows: int, gin_channels: int = 0):
        super().__init__()
        self.flows = nn.ModuleList(
            ResidualCoupling(channels, hidden, kernel_size, dilation_rate, n_layers, gin_channels)
            for _ in range(n_flows))

    def forward(self, x: torch.Tensor, mask: torch.Tensor, g: torch.Tensor | None = None,
                reverse: bool = False) -> torch.Tensor:
        """z -> z_p (``reverse`` False, training) or z_p -> z (``reverse`` True, inference)."""
        if not reverse:
            for flow in self.flows:
                x = torch.flip(flow(x, mask, g), [1])
        else:
            for flow in reversed(self.flows):
                x = flow(torch.flip(x, [1]), mask, g, reverse=True)
        return x
