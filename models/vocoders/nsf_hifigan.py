"""NSF-HiFiGAN: the HiFi-GAN generator topology (models/vocoders/generator.py) driven by a
neural-source-filter excitation (Wang, Takaki & Yamagishi 2019, "Neural source-filter-based
waveform model for statistical parametric speech synthesis", sec. 3.1, the harmonic-plus-noise
source of their hn-NSF), as so-vits-svc 4.1's decoder uses it:

* source: for harmonics h = 1 .. H+1 of the frame F0 (held over each hop), a sine with phase
  2 pi sum_t h f0_t / sr (a random start phase for h > 1), amplitude ``SINE_AMP``, plus Gaussian
  noise of std ``NOISE_STD`` where voiced; where unvoiced (f0 = 0) only noise of std
  SINE_AMP / 3. The H+1 channels are merged by a trained Linear + tanh into one excitation e.
* filter: x = conv_pre(latent) + cond(g); at upsampling stage i, x = up_i(lrelu(x)) +
  noise_conv_i(e) (a strided convolution bringing e down to that stage's rate), then the MRF.

Shapes: latent (B, C_in, T), f0 (B, T) Hz, g (B, gin, 1) -> waveform (B, 1, T * hop) in [-1, 1].
The module names (conv_pre, ups, resblocks, conv_post, noise_convs, cond, m_source.l_linear) are
so-vits-svc's, and those of the plain HiFi-GAN V1 that :func:`warm_start_from_hifigan` copies.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from models.vocoders.generator import MRFGenerator
from models.vocoders.hifigan import LRELU_SLOPE

HARMONICS = 8
SINE_AMP = 0.1
NOISE_STD = 0.003


def harmonic_source(f0: torch.Tensor, sample_rate: int, n_harmonics: int = HARMONICS,
                    generator: torch.Generator | None = None) -> torch.Tensor:
    """The sine-plus-noise excitation of every harmonic (module doc).

    Args: f0 (B, N) Hz per output sample, 0 where unvoiced; sample_rate Hz; n_harmonics above
        the fundamental; generator for the start phases and noise (None: the global one).
    Returns: (B, N, n_harmonics + 1) float32.
    """
    b, n = f0.shape
    k = torch.arange(1, n_harmonics + 2, device=f0.device, dtype=torch.float64)
    # cycles per sample, accumulated in float64 and wrapped so long signals keep their precision
    steps = f0.double()[..., None] * k / sample_rate
    start = torch.rand(b, 1, n_harmonics + 1, generator=generator, device=f0.device,
                       dtype=torch.float64)
    start[..., 0] = 0.0
    phase = torch.remainder(torch.cumsum(steps, dim=1) + start, 1.0)
    sines = (SINE_AMP * torch.sin(2 * math.pi * phase)).float()
    voiced = (f0 > 0).float()[..., None]
    noise = torch.randn(sines.shape, generator=generator, device=f0.device)
    return sines * voiced + noise * (voiced * NOISE_STD + (1 - voiced) * SINE_AMP / 3)


class SourceModule(nn.Module):
    """Harmonic source merged into one excitation channel: tanh(Linear(harmonic_source(f0))).

    Shapes: f0 (B, N) Hz per sample -> (B, 1, N)."""

    def __init__(self, sample_rate: int, n_harmonics: int = HARMONICS):
        super().__init__()
        self.sample_rate, self.n_harmonics = sample_rate, n_harmonics
        self.l_linear = nn.Linear(n_harmonics + 1, 1)

    def forward(self, f0: torch.Tensor) -> torch.Tensor:
        source = harmonic_source(f0, self.sample_rate, self.n_harmonics)
        return torch.tanh(self.l_linear(source)).transpose(1, 2)


class NSFHiFiGANGenerator(MRFGenerator):
    """HiFi-GAN ResBlock1 generator with an NSF source and a global condition (module doc).

    Args:
        in_channels: latent channels (VITS: inter_channels).
        sample_rate: Hz, for the source's phase.
        gin_channels: width of g (0: no condition).
        upsample_rates ... resblock_dilation_sizes: as :class:`models.vocoders.hifigan.
            HiFiGANGenerator` (their product is the hop size).
    """

    def __init__(self, in_channels: int, sample_rate: int, gin_channels: int,
                 upsample_rates: list[int], upsample_kernel_sizes: list[int],
                 upsample_initial_channel: int, resblock_kernel_sizes: list[int],
                 resblock_dilation_sizes: list[list[int]]):
        super().__init__(
            in_channels, upsample_rates, upsample_kernel_sizes, upsample_initial_channel,
            resblock_kernel_sizes, resblock_dilation_sizes,
            make_activation=lambda channels: nn.LeakyReLU(LRELU_SLOPE),
            up_activation=lambda: nn.LeakyReLU(LRELU_SLOPE),
            post_activation=lambda channels: nn.LeakyReLU(0.01))
        self.m_source = SourceModule(sample_rate)
        self.noise_convs = nn.ModuleList()
        for i in range(len(upsample_rates)):
            channels = upsample_initial_channel // 2 ** (i + 1)
            stride = math.prod(upsample_rates[i + 1:])
            self.noise_convs.append(
                nn.Conv1d(1, channels, 2 * stride, stride, padding=stride // 2) if stride > 1
                else nn.Conv1d(1, channels, 1))
        self.cond = nn.Conv1d(gin_channels, upsample_initial_channel, 1) if gin_channels else None

    def forward(self, x: torch.Tensor, f0: torch.Tensor, g: torch.Tensor | None = None) -> torch.Tensor:
        source = self.m_source(f0.repeat_interleave(self.hop_size, dim=1))
        x = self.conv_pre(x)
        if self.cond is not None and g is not None:
            x = x + self.cond(g)
        for i, (act, up, noise_conv) in enumerate(zip(self.up_activations, self.ups,
                                                      self.noise_convs)):
            x = up(act(x))
            x = x + noise_conv(source)[..., :x.shape[-1]]
            blocks = self.resblocks[i * self.num_kernels:(i + 1) * self.num_kernels]
            x = sum(block(x) for block in blocks) / self.num_kernels
        return torch.tanh(self.conv_post(self.activation_post(x)))


def warm_start_from_hifigan(generator: NSFHiFiGANGenerator, state: dict[str, torch.Tensor]) -> list[str]:
    """Copy a HiFi-GAN generator's upsamplers, MRF blocks and output convolution (weight norm
    already folded, :func:`models.vocoders.generator.fold_weight_norm`) into ``generator``; the
    input convolution (from the latent, not a mel), the source and the condition stay as they are.

    Returns: the names copied.
    Raises: ValueError naming the first tensor whose shape differs (another topology).
    """
    own = generator.state_dict()
    copied = {}
    for name, value in state.items():
        if name.startswith(("ups.", "resblocks.", "conv_post.")) and name in own:
            if own[name].shape != value.shape:
                raise ValueError(f"HiFi-GAN weight {name} has shape {tuple(value.shape)}, the "
                                 f"decoder's is {tuple(own[name].shape)}: another topology")
            copied[name] = value
    generator.load_state_dict(copied, strict=False)
    return sorted(copied)
