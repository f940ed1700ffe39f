"""Griffin-Lim mel inversion (Griffin & Lim 1984; the fast variant with momentum of Perraudin et al.
2013, as in librosa), matched to :mod:`processors.mel`: the log-mel is exponentiated, mapped back
to a linear magnitude with librosa's non-negative least squares against the same Slaney mel
basis, phase is estimated with the same periodic Hann window and center=False framing, and the
(n_fft - hop) / 2 reflect padding is cut off, so T frames give exactly T * hop samples aligned
with the input. A preview, not a vocoder: expect phasey, metallic audio.
"""
from __future__ import annotations

import librosa
import numpy as np

from models.vocoders.formats import MelSettings


def griffin_lim(log_mel: np.ndarray, settings: MelSettings, n_iter: int = 32,
                seed: int = 0) -> np.ndarray:
    """Waveform whose log-mel approximates ``log_mel``.

    Args: log_mel (n_mel, T) natural-log mel in processors/mel.py's convention (un-normalised);
        settings: the mel front end it was computed with; n_iter: Griffin-Lim iterations;
        seed: of the random initial phase (fixed: the same mel gives the same audio).
    Returns: float32 (T * hop_size,) at settings.sample_rate.
    Raises: ValueError when log_mel does not have settings.n_mel rows.
    """
    if log_mel.ndim != 2 or log_mel.shape[0] != settings.n_mel:
        raise ValueError(f"expected a ({settings.n_mel}, T) log-mel, got shape {log_mel.shape}")
    n_frames = log_mel.shape[1]
    magnitude = librosa.feature.inverse.mel_to_stft(
        np.exp(log_mel.astype(np.float64)), sr=settings.sample_rate, n_fft=settings.n_fft,
        power=1.0, fmin=settings.fmin, fmax=settings.fmax)
    wav = librosa.griffinlim(magnitude, n_iter=n_iter, hop_length=settings.hop_size,
                             win_length=settings.win_size, n_fft=settings.n_fft, window="hann",
                             center=False, random_state=seed)
    pad = (settings.n_fft - settings.hop_size) // 2
    out = np.zeros(n_frames * settings.hop_size, dtype=np.float32)
    body = wav[pad:pad + out.size]
    out[:body.size] = body
    return out
