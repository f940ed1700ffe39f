"""Cantor's log-mel (processors/mel.py) mapped onto Whisper's encoder input, differentiably, so a
predicted mel can be run through the Whisper encoder without a vocoder (the content-consistency
loss, modules/losses/content.py).

Both front ends use librosa's Slaney mel bands; when Cantor's config has Whisper's 80 bands over
0-8 kHz (the demo's 22.05 kHz / 80 mels / fmax 8 kHz does), the two spectrograms differ by:

1. scale: Cantor takes ln of a magnitude mel (n_fft, win_size at sample_rate), Whisper log10 of a
   power mel (n_fft 400, Hann 400 at 16 kHz). ``2 ln(m) / ln 10`` turns the log; a per-band offset
   makes the two agree in expectation for white noise: with per-sample variance s^2 at
   sample_rate, E|X_k|^2 = s'^2 sum(w^2) at 16 kHz (s'^2 = s^2 16000 / sample_rate after band
   limiting) and E|X_k| = (sqrt(pi) / 2) s sqrt(sum(w^2)) for Cantor's magnitude (Rayleigh), so

       offset_b = log10(16000 / sample_rate * sum(w400^2) * sum_k B16k[b, k])
                  - 2 log10(sqrt(pi) / 2 * sqrt(sum(w^2)) * sum_k B[b, k]);

   for tonal frames the magnitude-vs-power sums differ, which is why the map is approximate
   (bins/bench/whisper_mel_map.py measures it on real singing);
2. rate: Cantor's frame i is centred at (i + 1/2) hop / sample_rate s, Whisper's frame j at j / 100
   s; Whisper's frames are linearly interpolated from Cantor's;
3. Whisper's normalisation: clamp at (max - 8), then (x + 4) / 4 (openai-whisper's
   ``log_mel_spectrogram``), the max taken over each utterance's real frames; frames beyond an
   utterance's end hold the clamp floor, as Whisper's zero padding does.
"""
from __future__ import annotations

import math

import librosa
import numpy as np
import torch
from torch import nn

from utils.schema import PreprocessConfig

WHISPER_RATE = 16000
WHISPER_N_FFT = 400
WHISPER_FRAMES_PER_S = 100
WHISPER_N_MELS = 80
WHISPER_FMAX = 8000.0
# Whisper's dynamic range below the maximum, in log10 units, and its (x + 4) / 4 scaling.
DYNAMIC_RANGE = 8.0


def band_offsets(pcfg: PreprocessConfig) -> np.ndarray:
    """Per-band offset (n_mel,) of log10 power between Whisper's mel and 2 log10 of Cantor's
    magnitude mel for white noise (module docstring, step 1)."""
    ours = librosa.filters.mel(sr=pcfg.sample_rate, n_fft=pcfg.n_fft, n_mels=pcfg.n_mel,
                               fmin=pcfg.fmin, fmax=pcfg.fmax).sum(1)
    theirs = librosa.filters.mel(sr=WHISPER_RATE, n_fft=WHISPER_N_FFT,
                                 n_mels=WHISPER_N_MELS).sum(1)
    w_ours = np.sum(np.hanning(pcfg.win_size + 1)[:-1] ** 2)   # periodic Hann, as torch's
    w_theirs = np.sum(np.hanning(WHISPER_N_FFT + 1)[:-1] ** 2)
    return (np.log10(WHISPER_RATE / pcfg.sample_rate * w_theirs * theirs)
            - 2.0 * np.log10(math.sqrt(math.pi) / 2.0 * math.sqrt(w_ours) * ours))


class WhisperMel(nn.Module):
    """Cantor log-mel -> Whisper log-mel (module docstring). No trainable parameters.

    Args: pcfg: the preprocess config of the mels.
    Raises: ValueError unless the config has Whisper's bands (n_mel 80, fmin 0, fmax 8000 Hz).
    """

    def __init__(self, pcfg: PreprocessConfig):
        super().__init__()
        if (pcfg.n_mel, pcfg.fmin, pcfg.fmax) != (WHISPER_N_MELS, 0.0, WHISPER_FMAX):
            raise ValueError(f"the mel-to-Whisper map needs Whisper's mel bands (preprocess.n_mel "
                             f"80, fmin 0, fmax 8000); this config has {pcfg.n_mel} bands over "
                             f"{pcfg.fmin:g}-{pcfg.fmax:g} Hz")
        self.frames_per_s = pcfg.sample_rate / pcfg.hop_size
        self.register_buffer("offset", torch.from_numpy(band_offsets(pcfg)).float()[None, :, None],
                             persistent=False)

    def forward(self, log_mel: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor,
                                                                           torch.Tensor]:
        """Map a batch.

        Args: log_mel: (B, 80, T) natural-log magnitude mel (processors/mel.py, un-normalised);
            mask: (B, T) bool, True = real frame.
        Returns: (B, 80, M) Whisper log-mel at 100 frames/s, M = floor(T / frames_per_s * 100),
            and its (B, M) bool mask of frames inside each utterance.
        """
        b, _, t = log_mel.shape
        m = int(t / self.frames_per_s * WHISPER_FRAMES_PER_S)
        pos = torch.arange(m, device=log_mel.device, dtype=torch.float32)
        u = (pos / WHISPER_FRAMES_PER_S * self.frames_per_s - 0.5).clamp(0, t - 1)
        lo = u.floor().long()
        hi = (lo + 1).clamp(max=t - 1)
        frac = (u - lo.float()).to(log_mel.dtype)
        log10_power = 2.0 / math.log(10.0) * log_mel + self.offset.to(log_mel.dtype)
        x = log10_power[..., lo] * (1 - frac) + log10_power[..., hi] * frac      # (B, 80, M)
        lengths = mask.sum(1)                                                     # (B,)
        inside = pos[None, :] <= (lengths[:, None].float() - 0.5) / self.frames_per_s \
            * WHISPER_FRAMES_PER_S
        peak = torch.where(inside[:, None, :], x, torch.full_like(x, -math.inf)).amax((1, 2))
        floor = (peak - DYNAMIC_RANGE)[:, None, None]
        x = torch.where(inside[:, None, :], torch.maximum(x, floor), floor)
        return (x + 4.0) / 4.0, inside
