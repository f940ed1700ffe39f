"""BigVGAN generator (Lee et al. 2023, "BigVGAN: A Universal Neural Vocoder with Large-Scale
Training", sec. 3): HiFi-GAN's topology with no activation before the upsamplers, anti-aliased
Snake / SnakeBeta activations (:mod:`models.vocoders.alias_free`) in the AMP residual blocks and
before the output convolution, and tanh (or, for v2 checkpoints that ask for it, a clamp) at the
end. The 24 kHz singing recipe uses 100 mels, hop 256 (upsampling 8, 8, 2, 2).

Loads both released formats (:func:`models.vocoders.formats.bigvgan_files`): NVIDIA's
``bigvgan_generator.pt`` ({"generator": ...}) + ``config.json``, and Amphion's ``<step>.pt``
({"generator_state_dict": ...}) + ``args.json`` (topology under ``model.bigvgan``).
"""
from __future__ import annotations

import re

from torch import nn

from models.vocoders.alias_free import Activation1d, Snake, SnakeBeta
from models.vocoders.formats import MelSettings, VocoderFiles, mel_settings, read_json
from models.vocoders.generator import MRFGenerator, load_generator_state, read_generator_state

_ACTIVATIONS = {"snake": Snake, "snakebeta": SnakeBeta}
# BigVGAN keeps each upsampler in a one-element ModuleList: ups.<i>.0.<param>.
_NESTED_UPS = re.compile(r"^ups\.(\d+)\.0\.")


class BigVGANGenerator(MRFGenerator):
    """BigVGAN generator with AMPBlock1 residual blocks.

    Args: as the ``config.json`` / ``model.bigvgan`` keys of the releases; activation "snake" or
        "snakebeta"; snake_logscale: the Snake parameters are stored as logarithms.
    Shapes: log-mel (B, n_mel, T) -> waveform (B, 1, T * prod(upsample_rates)) in [-1, 1].
    """

    def __init__(self, n_mel: int, upsample_rates: list[int], upsample_kernel_sizes: list[int],
                 upsample_initial_channel: int, resblock_kernel_sizes: list[int],
                 resblock_dilation_sizes: list[list[int]], activation: str = "snakebeta",
                 snake_logscale: bool = True, use_bias_at_final: bool = True,
                 use_tanh_at_final: bool = True):
        act = _ACTIVATIONS[activation]
        super().__init__(
            n_mel, upsample_rates, upsample_kernel_sizes, upsample_initial_channel,
            resblock_kernel_sizes, resblock_dilation_sizes,
            make_activation=lambda channels: Activation1d(act(channels, snake_logscale)),
            up_activation=nn.Identity,
            post_activation=lambda channels: Activation1d(act(channels, snake_logscale)),
            bias_at_final=use_bias_at_final, tanh_at_final=use_tanh_at_final)


_TOPOLOGY = ("upsample_rates", "upsample_kernel_sizes", "upsample_initial_channel",
             "resblock_kernel_sizes", "resblock_dilation_sizes")
_OPTIONAL = {"activation": "snakebeta", "snake_logscale": True, "use_bias_at_final": True,
             "use_tanh_at_final": True}


def bigvgan_hparams(files: VocoderFiles) -> dict:
    """The generator arguments written in a release's json (NVIDIA: top level; Amphion:
    ``model.bigvgan``), without n_mel.

    Raises: ValueError naming the json when a key is missing or unsupported.
    """
    data = read_json(files.config)
    if files.kind == "bigvgan_amphion":
        data = data.get("model", {}).get("bigvgan", {})
    missing = [k for k in _TOPOLOGY if k not in data]
    if missing:
        raise ValueError(f"{files.config}: the BigVGAN config lacks {', '.join(missing)}")
    if str(data.get("resblock", "1")) != "1":
        raise ValueError(f"{files.config}: only AMPBlock1 (resblock \"1\", every released "
                         f"BigVGAN) is supported, not resblock {data['resblock']!r}")
    if data.get("activation", "snakebeta") not in _ACTIVATIONS:
        raise ValueError(f"{files.config}: activation {data['activation']!r} is not one of "
                         f"{', '.join(_ACTIVATIONS)}")
    hparams = {k: data[k] for k in _TOPOLOGY}
    hparams.update({k: data.get(k, default) for k, default in _OPTIONAL.items()})
    return hparams


def load_bigvgan(files: VocoderFiles) -> tuple[BigVGANGenerator, MelSettings]:
    """Build the generator a release describes and load its weights (weight norm folded, either
    torch spelling).

    Args: files from :func:`models.vocoders.formats.bigvgan_files`.
    Returns: the generator (eval mode, on CPU) and its mel settings.
    Raises: ValueError naming the file when it is unreadable or its weights do not fit its json.
    """
    settings = mel_settings(files)
    generator = BigVGANGenerator(settings.n_mel, **bigvgan_hparams(files))
    key = "generator_state_dict" if files.kind == "bigvgan_amphion" else "generator"
    state = read_generator_state(files.checkpoint, key)
    state = {_NESTED_UPS.sub(r"ups.\1.", k.removeprefix("module.")): v for k, v in state.items()}
    load_generator_state(generator, state, files.checkpoint)
    return generator.eval(), settings
