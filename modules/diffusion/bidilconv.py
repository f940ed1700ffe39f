"""The denoiser network F_theta of DiffComoSVC: a non-causal, bidirectional dilated-convolution
stack in the style of WaveNet (van den Oord et al. 2016) as DiffWave (Kong et al. 2021) and DiffSVC
(Liu et al. 2021) use it on mel frames, with the configuration of Amphion's BiDilConv decoder (Lu
et al. 2024, CoMoSVC):

    h = ReLU(Conv1x1(x))
    for each residual block b (dilation 2^(b mod dilation_cycle), kernel 3):
        a, g  = split(DilatedConv(h + e) + Conv1x1(mu))        e: noise-level embedding
        y     = tanh(a) * sigmoid(g)                            (gated activation unit)
        r, s  = split(Conv1x1(y))
        h     = (h + r) / sqrt(2);   skip += s
    out = Conv1x1_zero(ReLU(Conv1x1(skip / sqrt(n_blocks))))

The noise-level embedding is the sinusoidal embedding of c_noise (128 channels, periods up to 10^4;
Vaswani et al. 2017) through an MLP (Linear-SiLU-Linear-SiLU-Linear, hidden 512). The last layer
starts at zero so the untrained network outputs F = 0 (EDM's D then starts at c_skip * x). With
``init="kaiming_normal"`` (Amphion's modules/general/utils.py wrappers) every other convolution and
linear layer of the network, the noise-level MLP included, draws its weights from the Kaiming
normal distribution N(0, 2 / fan_in) (He et al. 2015, eq. 10); biases keep torch's default.
Padded frames are zeroed before every convolution and in the output.
"""
from __future__ import annotations

import math

import torch
from torch import nn

NOISE_EMBEDDING_DIM = 128
NOISE_MLP_HIDDEN = 512
MAX_PERIOD = 10000.0


def sinusoidal_embedding(x: torch.Tensor, dim: int, max_period: float = MAX_PERIOD) -> torch.Tensor:
    """[cos(x w_k), sin(x w_k)] with w_k = max_period^(-k / (dim/2)), k = 0 .. dim/2 - 1.

    Args: x (B,) real values (here c_noise); dim even. Returns (B, dim) float32.
    """
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, device=x.device) / half)
    args = x.float()[:, None] * freqs[None, :]
    return torch.cat([torch.cos(args), torch.sin(args)], dim=-1)


class NoiseLevelEmbedding(nn.Module):
    """c_noise (B,) -> (B, channels): sinusoidal embedding then a 3-layer SiLU MLP."""

    def __init__(self, channels: int):
        super().__init__()
        self.mlp = nn.Sequential(
            nn.Linear(NOISE_EMBEDDING_DIM, NOISE_MLP_HIDDEN), nn.SiLU(),
            nn.Linear(NOISE_MLP_HIDDEN, NOISE_MLP_HIDDEN), nn.SiLU(),
            nn.Linear(NOISE_MLP_HIDDEN, channels))

    def forward(self, c_noise: torch.Tensor) -> torch.Tensor:
        return self.mlp(sinusoidal_embedding(c_noise, NOISE_EMBEDDING_DIM))


class GatedResidualBlock(nn.Module):
    """One residual block: dilated conv (C -> 2C) + 1x1 conditioning (cond_channels -> 2C), gated
    tanh * sigmoid, 1x1 conv (C -> 2C) split into residual and skip.

    Args: channels C, cond_channels (n_mel: mu), kernel_size (odd), dilation.
    """

    def __init__(self, channels: int, cond_channels: int, kernel_size: int, dilation: int):
        super().__init__()
        self.dilated = nn.Conv1d(channels, 2 * channels, kernel_size, dilation=dilation,
                                 padding=dilation * (kernel_size - 1) // 2)
        self.cond = nn.Conv1d(cond_channels, 2 * channels, 1)
        self.out = nn.Conv1d(channels, 2 * channels, 1)

    def forward(self, h: torch.Tensor, emb: torch.Tensor, cond: torch.Tensor,
                m: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Args: h (B, C, T); emb (B, C); cond (B, cond_channels, T); m (B, 1, T) float mask.
        Returns: (residual output (B, C, T), skip (B, C, T))."""
        a, g = (self.dilated((h + emb[..., None]) * m) + self.cond(cond)).chunk(2, dim=1)
        res, skip = self.out(torch.tanh(a) * torch.sigmoid(g)).chunk(2, dim=1)
        return (h + res) * (m / math.sqrt(2.0)), skip


class BiDilConv(nn.Module):
    """Bidirectional dilated-conv denoiser F_theta(c_in x, c_noise; mu).

    Args:
        n_mel: mel bins (input, output and conditioning channels).
        channels: residual channels; n_blocks: residual blocks;
        dilation_cycle: dilations 2^0 .. 2^(dilation_cycle - 1), repeated; kernel_size: 3.
        init: "kaiming_normal" or "default" (torch's), for every layer but the zeroed output.
    Raises:
        ValueError: n_blocks < 1, dilation_cycle < 1, an even kernel_size or an unknown init.
    """

    def __init__(self, n_mel: int, channels: int, n_blocks: int, dilation_cycle: int,
                 kernel_size: int = 3, init: str = "kaiming_normal"):
        super().__init__()
        if n_blocks < 1 or dilation_cycle < 1 or kernel_size % 2 == 0:
            raise ValueError(f"BiDilConv needs n_blocks >= 1, dilation_cycle >= 1 and an odd "
                             f"kernel, got {n_blocks}, {dilation_cycle}, {kernel_size}")
        if init not in ("kaiming_normal", "default"):
            raise ValueError(f"unknown init {init!r} (kaiming_normal or default)")
        self.input = nn.Conv1d(n_mel, channels, 1)
        self.noise_embedding = NoiseLevelEmbedding(channels)
        self.blocks = nn.ModuleList(
            GatedResidualBlock(channels, n_mel, kernel_size, 2 ** (i % dilation_cycle))
            for i in range(n_blocks))
        self.skip_proj = nn.Conv1d(channels, channels, 1)
        self.output = nn.Conv1d(channels, n_mel, 1)
        if init == "kaiming_normal":
            for layer in self.modules():
                if isinstance(layer, (nn.Conv1d, nn.Linear)):
                    nn.init.kaiming_normal_(layer.weight)
        nn.init.zeros_(self.output.weight)
        nn.init.zeros_(self.output.bias)

    def forward(self, x: torch.Tensor, c_noise: torch.Tensor, mu: torch.Tensor,
                mask: torch.Tensor) -> torch.Tensor:
        """Args: x (B, n_mel, T) network input (c_in * noisy mel); c_noise (B,) noise-level input
        (ln(sigma) / 4); mu (B, n_mel, T) coarse mel; mask (B, T) bool.
        Returns: F (B, n_mel, T), zero on padded frames."""
        m = mask[:, None, :].to(x.dtype)
        emb = self.noise_embedding(c_noise).to(x.dtype)
        h = torch.relu(self.input(x * m))
        skip = torch.zeros_like(h)
        for block in self.blocks:
            h, s = block(h, emb, mu, m)
            skip = skip + s
        out = torch.relu(self.skip_proj(skip * (m / math.sqrt(len(self.blocks)))))
        return self.output(out) * m
