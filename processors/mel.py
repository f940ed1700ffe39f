"""The one mel spectrogram of Cantor (training features, inference, vocoder checks), in the
HiFi-GAN / BigVGAN convention (Kong et al. 2020; Lee et al. 2023) that their released generators
expect:

1. reflect-pad the waveform by (n_fft - hop) / 2 samples on both sides;
2. STFT with n_fft, hop_size, a periodic Hann window of win_size, center=False;
3. magnitude sqrt(re^2 + im^2 + 1e-9);
4. librosa's Slaney-normalised mel basis (n_mel bins, fmin..fmax);
5. log(clamp(mel, 1e-5)).

With this padding a signal of N samples gives T = N // hop_size frames, frame i centred at sample
i * hop_size + hop_size / 2 of the unpadded signal (the frame times every F0 extractor and content
feature is interpolated onto). Layout: mels are (n_mel, T) for one utterance, (batch, n_mel, T) for
batches.

Energy is the L2 norm of each linear-magnitude mel column (before the log), shape (T,).
"""
from __future__ import annotations

import functools

import librosa
import numpy as np
import torch

from utils.schema import PreprocessConfig

LOG_CLAMP = 1e-5
MAGNITUDE_EPS = 1e-9


@functools.lru_cache(maxsize=16)
def _mel_basis(sample_rate: int, n_fft: int, n_mel: int, fmin: float, fmax: float) -> torch.Tensor:
    basis = librosa.filters.mel(sr=sample_rate, n_fft=n_fft, n_mels=n_mel, fmin=fmin, fmax=fmax)
    return torch.from_numpy(basis).float()


@functools.lru_cache(maxsize=16)
def _window(win_size: int) -> torch.Tensor:
    return torch.hann_window(win_size)


def mel_frame_times(n_frames: int, hop_size: int, sample_rate: int) -> np.ndarray:
    """Centre time (seconds) of each mel frame: (i * hop + hop / 2) / sample_rate, shape (T,)."""
    return (np.arange(n_frames) * hop_size + hop_size / 2) / sample_rate


def n_mel_frames(n_samples: int, hop_size: int) -> int:
    """Number of mel frames T for a signal of ``n_samples`` samples."""
    return n_samples // hop_size


def magnitude_spectrogram(wav: torch.Tensor, cfg: PreprocessConfig) -> torch.Tensor:
    """Linear STFT magnitude sqrt(re^2 + im^2 + 1e-9) with the padding and framing of the module
    doc (steps 1-3): the posterior encoder's input in VITS.

    Args: wav (samples,) or (batch, samples) float tensor at cfg.sample_rate.
    Returns: (n_fft // 2 + 1, T) or (batch, n_fft // 2 + 1, T), T = samples // hop_size.
    Raises: ValueError if the signal is shorter than one hop.
    """
    squeeze = wav.dim() == 1
    if squeeze:
        wav = wav[None]
    if wav.shape[-1] < cfg.hop_size:
        raise ValueError(f"signal of {wav.shape[-1]} samples is shorter than one hop ({cfg.hop_size})")
    pad = (cfg.n_fft - cfg.hop_size) // 2
    mode = "reflect" if wav.shape[-1] > pad else "constant"
    x = torch.nn.functional.pad(wav[:, None], (pad, pad), mode=mode)[:, 0]
    spec = torch.stft(x, cfg.n_fft, hop_length=cfg.hop_size, win_length=cfg.win_size,
                      window=_window(cfg.win_size).to(x.device), center=False, return_complex=True)
    mag = torch.sqrt(spec.real.pow(2) + spec.imag.pow(2) + MAGNITUDE_EPS)
    return mag[0] if squeeze else mag


def linear_mel(wav: torch.Tensor, cfg: PreprocessConfig) -> torch.Tensor:
    """Linear-magnitude mel spectrogram (before the log).

    Args: wav (samples,) or (batch, samples) float tensor at cfg.sample_rate.
    Returns: (n_mel, T) or (batch, n_mel, T), T = samples // hop_size.
    Raises: ValueError if the signal is shorter than one hop.
    """
    mag = magnitude_spectrogram(wav, cfg)
    basis = _mel_basis(cfg.sample_rate, cfg.n_fft, cfg.n_mel, cfg.fmin, cfg.fmax).to(mag.device)
    return torch.matmul(basis, mag)


def log_mel(linear: torch.Tensor) -> torch.Tensor:
    """log(clamp(mel, 1e-5)) of a linear mel, any shape."""
    return torch.log(torch.clamp(linear, min=LOG_CLAMP))


def mel_spectrogram(wav: np.ndarray | torch.Tensor, cfg: PreprocessConfig) -> torch.Tensor:
    """Log-mel spectrogram, (n_mel, T) or (batch, n_mel, T); see the module docstring."""
    wav = torch.as_tensor(wav, dtype=torch.float32)
    return log_mel(linear_mel(wav, cfg))


def mel_and_energy(wav: np.ndarray, cfg: PreprocessConfig) -> tuple[np.ndarray, np.ndarray]:
    """Log-mel (n_mel, T) and energy (T,) of one utterance, float32 numpy."""
    linear = linear_mel(torch.as_tensor(wav, dtype=torch.float32), cfg)
    energy = torch.linalg.vector_norm(linear, dim=0)
    return log_mel(linear).numpy(), energy.numpy()
