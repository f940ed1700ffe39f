"""The generator topology HiFi-GAN V1 and BigVGAN share (Kong et al. 2020, "HiFi-GAN: Generative
Adversarial Networks for Efficient and High Fidelity Speech Synthesis", sec. 2.1 and fig. 1; Lee et
al. 2023, "BigVGAN", sec. 3): a 7-tap input convolution, a stack of transposed-convolution
upsamplers, after each one a multi-receptive-field fusion (MRF: the mean of residual blocks with
different kernel sizes and dilations), and a 7-tap output convolution. The two vocoders differ
only in their activations, which the subclasses pass in.

The modules hold plain convolution weights: weight norm is folded in when a checkpoint is loaded
(:func:`fold_weight_norm`), which is what removing weight norm for inference amounts to.
"""
from __future__ import annotations

import pickle
import re
from pathlib import Path
from typing import Callable

import torch
from torch import nn

ActivationFactory = Callable[[int], nn.Module]


def _same_padding(kernel_size: int, dilation: int) -> int:
    return (kernel_size * dilation - dilation) // 2


class MRFResBlock(nn.Module):
    """HiFi-GAN's ResBlock1 / BigVGAN's AMPBlock1: for each dilation d,
    x += conv_1(act(conv_d(act(x)))), all convolutions length-preserving.

    Args: channels C; kernel_size; dilations of the first convolution of each pair;
    make_activation: channels -> activation module (``activations[2i]`` precedes ``convs1[i]``,
    ``activations[2i + 1]`` precedes ``convs2[i]``).
    Shapes: (B, C, T) -> (B, C, T).
    """

    def __init__(self, channels: int, kernel_size: int, dilations: list[int],
                 make_activation: ActivationFactory):
        super().__init__()
        self.convs1 = nn.ModuleList(
            nn.Conv1d(channels, channels, kernel_size, dilation=d,
                      padding=_same_padding(kernel_size, d)) for d in dilations)
        self.convs2 = nn.ModuleList(
            nn.Conv1d(channels, channels, kernel_size, padding=_same_padding(kernel_size, 1))
            for _ in dilations)
        self.activations = nn.ModuleList(make_activation(channels)
                                         for _ in range(2 * len(dilations)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for i, (conv1, conv2) in enumerate(zip(self.convs1, self.convs2)):
            h = conv1(self.activations[2 * i](x))
            x = x + conv2(self.activations[2 * i + 1](h))
        return x


class MRFGenerator(nn.Module):
    """Log-mel to waveform: conv_pre, then per stage an (optional) activation, a transposed
    convolution halving the channels, and the MRF mean; then post activation, conv_post, and tanh
    (or a clamp to [-1, 1]).

    Args:
        n_mel: input mel bins.
        upsample_rates / upsample_kernel_sizes: one per stage; their product is the hop size.
        initial_channels: channels after conv_pre (stage i has initial_channels / 2^(i+1)).
        resblock_kernel_sizes / resblock_dilations: the MRF's residual blocks.
        make_activation: activation inside the residual blocks.
        up_activation: module applied before each upsampler (HiFi-GAN: leaky ReLU; BigVGAN: none).
        post_activation: module applied before conv_post.
        bias_at_final: conv_post has a bias. tanh_at_final: tanh output, else clamp.
    Shapes: (B, n_mel, T) -> (B, 1, T * prod(upsample_rates)), float in [-1, 1].
    """

    def __init__(self, n_mel: int, upsample_rates: list[int], upsample_kernel_sizes: list[int],
                 initial_channels: int, resblock_kernel_sizes: list[int],
                 resblock_dilations: list[list[int]], make_activation: ActivationFactory,
                 up_activation: Callable[[], nn.Module], post_activation: ActivationFactory,
                 bias_at_final: bool = True, tanh_at_final: bool = True):
        super().__init__()
        self.hop_size = 1
        for rate in upsample_rates:
            self.hop_size *= rate
        self.n_mel = n_mel
        self.num_kernels = len(resblock_kernel_sizes)
        self.tanh_at_final = tanh_at_final
        self.conv_pre = nn.Conv1d(n_mel, initial_channels, 7, padding=3)
        self.up_activations = nn.ModuleList(up_activation() for _ in upsample_rates)
        self.ups = nn.ModuleList()
        self.resblocks = nn.ModuleList()
        channels = initial_channels
        for rate, kernel in zip(upsample_rates, upsample_kernel_sizes):
            self.ups.append(nn.ConvTranspose1d(channels, channels // 2, kernel, rate,
                                               padding=(kernel - rate) // 2))
            channels //= 2
            for k, dilations in zip(resblock_kernel_sizes, resblock_dilations):
                self.resblocks.append(MRFResBlock(channels, k, dilations, make_activation))
        self.activation_post = post_activation(channels)
        self.conv_post = nn.Conv1d(channels, 1, 7, padding=3, bias=bias_at_final)

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        x = self.conv_pre(mel)
        for i, (act, up) in enumerate(zip(self.up_activations, self.ups)):
            x = up(act(x))
            blocks = self.resblocks[i * self.num_kernels:(i + 1) * self.num_kernels]
            x = sum(block(x) for block in blocks) / self.num_kernels
        x = self.conv_post(self.activation_post(x))
        return torch.tanh(x) if self.tanh_at_final else x.clamp(-1.0, 1.0)


_PARAMETRIZED = re.compile(r"^(.*)\.parametrizations\.weight\.original([01])$")


def fold_weight_norm(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Replace weight-normalised parameters by the weights they stand for, w = g * v / ||v||
    (Salimans & Kingma 2016, eq. 2; the norm over every dimension but the first).

    Accepts both torch spellings: ``<name>.weight_g`` / ``<name>.weight_v`` (torch.nn.utils.
    weight_norm) and ``<name>.parametrizations.weight.original0`` / ``original1`` (the
    parametrization API). Other entries pass through unchanged.
    """
    pairs: dict[str, dict[str, torch.Tensor]] = {}
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        match = _PARAMETRIZED.match(key)
        if match:
            pairs.setdefault(match[1], {})["gv"[int(match[2])]] = value
        elif key.endswith((".weight_g", ".weight_v")):
            pairs.setdefault(key[:-len(".weight_g")], {})[key[-1]] = value
        else:
            out[key] = value
    for name, gv in pairs.items():
        if set(gv) != {"g", "v"}:
            raise KeyError(f"weight-norm parameter '{name}' lacks its "
                           f"{'magnitude (g)' if 'g' not in gv else 'direction (v)'}")
        v = gv["v"].float()
        norm = torch.linalg.vector_norm(v.flatten(1), dim=1).view(-1, *[1] * (v.dim() - 1))
        out[f"{name}.weight"] = gv["g"].float() * v / norm
    return out


def read_generator_state(path: Path, key: str) -> dict[str, torch.Tensor]:
    """``torch.load(path, weights_only=True)[key]``: the generator state dict of a released file.

    Raises: ValueError naming the file when it cannot be read safely or lacks ``key``.
    """
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, OSError) as e:
        raise ValueError(f"{path}: cannot read the vocoder checkpoint with weights_only=True: "
                         f"{str(e)[:300]}") from None
    if not isinstance(checkpoint, dict) or not isinstance(checkpoint.get(key), dict):
        found = list(checkpoint)[:8] if isinstance(checkpoint, dict) else type(checkpoint).__name__
        raise ValueError(f"{path}: expected a dict with a '{key}' state dict, found {found}")
    return checkpoint[key]


def load_generator_state(model: nn.Module, state: dict[str, torch.Tensor], source: Path) -> None:
    """Load a released generator state dict into ``model`` strictly, after dropping the
    ``module.`` prefix of multi-GPU training and folding weight norm.

    Raises: ValueError naming ``source`` when names or shapes do not fit the model its config
    describes.
    """
    try:
        model.load_state_dict(fold_weight_norm({k.removeprefix("module."): v
                                                for k, v in state.items()}), strict=True)
    except (RuntimeError, KeyError) as e:
        raise ValueError(f"{source}: the weights do not fit the generator its config describes: "
                         f"{str(e)[:600]}") from None
