"""Mel cepstral distortion (MCD) between two recordings of the same content: DTW-aligned, or frame
by frame when both have the same timing (a self-reconstruction against the real recording).

Spectral envelopes come from WORLD (pyworld: DIO + StoneMask F0, CheapTrick envelope; Morise et al.
2016) every ``frame_period_ms``. Each envelope is frequency-warped by the first-order all-pass
(mel-cepstral analysis, Fukada et al. 1992: warped frequency
beta(w) = w + 2 atan(alpha sin w / (1 - alpha cos w))) and its log power is expanded in a cosine
series of the warped frequency; coefficient m (m >= 1) of that series is the mel-cepstral
coefficient c_m in SPTK's scaling (the one ``pysptk.sp2mc`` returns). alpha is fitted to the mel
scale mel(f) = 1000 log2(1 + f / 1000) (Fant 1968) at the sample rate, giving SPTK's customary values
(0.41 at 16 kHz, 0.455 at 22.05 kHz, 0.466 at 24 kHz, 0.554 at 48 kHz).

The two mel-cepstrum sequences (c_1..c_D; c_0, the frame energy, is left out) are aligned by dynamic
time warping (librosa) on Euclidean distance, or paired frame by frame on their common first frames,
and the distortion, in dB, is averaged over the pairs (Kubichek 1993, "Mel-cepstral distance measure for objective speech quality
assessment"):

    MCD = (10 / ln 10) * sqrt(2 * sum_{d=1..D} (c_d - c'_d)^2)

which is the RMS difference of the two log spectral envelopes in dB.
"""
from __future__ import annotations

import functools

import numpy as np

MCD_CONSTANT = 10.0 / np.log(10.0) * np.sqrt(2.0)


@functools.lru_cache(maxsize=8)
def all_pass_alpha(sample_rate: int) -> float:
    """All-pass constant whose warping best fits the mel scale 1000 log2(1 + f / 1000) over
    0..sample_rate/2 (least squares on a 0.001 grid), e.g. 0.41 at 16 kHz, 0.466 at 24 kHz."""
    w = np.linspace(0.0, np.pi, 1000)
    mel = np.log1p(w / np.pi * sample_rate / 2 / 1000.0)
    mel = mel / mel[-1] * np.pi
    alphas = np.arange(0.0, 0.99, 0.001)
    errors = [np.sum((_warp(w, a) - mel) ** 2) for a in alphas]
    return float(alphas[int(np.argmin(errors))])


def _warp(w: np.ndarray, alpha: float) -> np.ndarray:
    """Frequency warping of the first-order all-pass (Fukada et al. 1992); -alpha inverts it."""
    return w + 2.0 * np.arctan(alpha * np.sin(w) / (1.0 - alpha * np.cos(w)))


def mel_cepstrum(wav: np.ndarray, sample_rate: int, order: int = 24,
                 frame_period_ms: float = 5.0) -> np.ndarray:
    """Mel-cepstral coefficients c_1..c_order of each WORLD analysis frame.

    Args: wav (samples,) float waveform at ``sample_rate`` Hz.
    Returns: (frames, order) float64, one frame every ``frame_period_ms`` ms.
    Raises: ValueError if the waveform is empty or ``order`` is too large for the FFT size.
    """
    import pyworld

    x = np.ascontiguousarray(wav, dtype=np.float64)
    if x.size == 0:
        raise ValueError("empty waveform")
    f0, t = pyworld.dio(x, sample_rate, frame_period=frame_period_ms)
    f0 = pyworld.stonemask(x, f0, t, sample_rate)
    envelope = pyworld.cheaptrick(x, f0, t, sample_rate)  # (frames, fft_size // 2 + 1) power
    n_bins = envelope.shape[1]
    if order >= n_bins - 1:
        raise ValueError(f"order {order} too large for {n_bins} frequency bins")
    # Sample the log envelope on a uniform grid of the warped frequency, then take its cosine series.
    linear = np.linspace(0.0, np.pi, n_bins)
    source_w = _warp(linear, -all_pass_alpha(sample_rate))
    log_env = np.log(np.maximum(envelope, 1e-20))
    warped = np.stack([np.interp(source_w, linear, frame) for frame in log_env])
    cepstrum = np.fft.irfft(warped, axis=1)
    return cepstrum[:, 1:order + 1]


def mel_cepstral_distortion(wav_a: np.ndarray, wav_b: np.ndarray, sample_rate: int,
                            order: int = 24, frame_period_ms: float = 5.0, align: bool = True) -> float:
    """MCD in dB between two waveforms (samples,) of the same content at ``sample_rate`` Hz
    (module docstring: Kubichek 1993): DTW-aligned when ``align``, else frame i against frame i on the
    common first frames. 0 for identical inputs.

    Raises: ValueError if either waveform is empty.
    """
    a = mel_cepstrum(wav_a, sample_rate, order, frame_period_ms)
    b = mel_cepstrum(wav_b, sample_rate, order, frame_period_ms)
    if align:
        import librosa

        _, path = librosa.sequence.dtw(X=a.T, Y=b.T, metric="euclidean")
        diff = a[path[:, 0]] - b[path[:, 1]]
    else:
        n = min(len(a), len(b))
        diff = a[:n] - b[:n]
    return float(np.mean(MCD_CONSTANT * np.sqrt(np.sum(diff ** 2, axis=1))))
