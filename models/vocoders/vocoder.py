"""The one vocoder interface of Cantor: a callable from log-mel batches to waveform batches."""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from models.vocoders.formats import MelSettings
from models.vocoders.griffin_lim import griffin_lim
from models.vocoders.runtimes import TorchRuntime


class PreviewVocoderWarning(UserWarning):
    """Audio is made with Griffin-Lim: a preview of the content, not the quality of a neural
    vocoder."""


class Vocoder:
    """Log-mel to waveform with a neural generator or Griffin-Lim (see :func:`models.vocoders.
    load_vocoder`).

    Call: mel (B, n_mel, T) float tensor, natural-log mel in processors/mel.py's convention,
    UN-normalised -> waveform (B, T * hop_size) float32 tensor in [-1, 1] at ``sample_rate`` Hz,
    on the input's device. Raises ValueError for a mel of the wrong shape.

    Args: kind, settings; generator (None: Griffin-Lim); device (torch's); griffin_lim_iters;
        runtime: where the generator runs (models/vocoders/runtimes.py; None: torch fp32 on
        ``device``).
    Attributes: kind ("hifigan", "bigvgan", "griffin_lim"), settings (the mel front end it expects),
    sample_rate, hop_size, n_mel, is_preview (True for Griffin-Lim), backend and precision of the
    runtime ("griffin_lim" / "fp32" without a generator).
    """

    def __init__(self, kind: str, settings: MelSettings, generator: nn.Module | None = None,
                 device: str | torch.device = "cpu", griffin_lim_iters: int = 32, runtime=None):
        self.kind = kind
        self.settings = settings
        self.sample_rate = settings.sample_rate
        self.hop_size = settings.hop_size
        self.n_mel = settings.n_mel
        self.is_preview = generator is None
        self.device = torch.device(device)
        if generator is not None and runtime is None:
            runtime = TorchRuntime(generator.to(self.device))
        self.runtime = runtime
        self.backend = runtime.backend if runtime is not None else "griffin_lim"
        self.precision = runtime.precision if runtime is not None else "fp32"
        self.griffin_lim_iters = griffin_lim_iters

    def __call__(self, mel: torch.Tensor) -> torch.Tensor:
        if mel.dim() != 3 or mel.shape[1] != self.n_mel:
            raise ValueError(f"the {self.kind} vocoder expects a (batch, {self.n_mel}, frames) "
                             f"log-mel, got shape {tuple(mel.shape)}")
        if self.runtime is None:
            wavs = [griffin_lim(m, self.settings, self.griffin_lim_iters)
                    for m in mel.detach().float().cpu().numpy()]
            return torch.from_numpy(np.stack(wavs)).to(mel.device)
        return self.runtime(mel)
