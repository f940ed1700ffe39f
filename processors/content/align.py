"""Put frame-rate features (Whisper / ContentVec: one vector every 20 ms) onto the mel frame grid by
area interpolation on time stamps.

Each source frame j is taken as constant over [c + j*p - p/2, c + j*p + p/2] (c: centre of frame 0,
p: frame period, seconds); each mel frame i covers [i*hop, (i+1)*hop] / sample_rate (centred at
(i + 1/2) * hop / sample_rate, as in :mod:`processors.mel`). A mel frame's feature is the time average
of the source over its interval; the source is extended with its first / last frame beyond its ends,
so the result always has exactly the mel length T.

This is what Amphion's "repeat 15 times, average groups of 8" computes for 20 ms features and hop 256
at 24 kHz (480 : 256 samples = 15 : 8; Zhang et al. 2024, Amphion, ``processors/content_extractor.py``),
generalised to any rates and to the models' true frame centres (Whisper's encoder frame j is centred
at 20j ms, ContentVec's at 20j + 12.47 ms; Amphion takes both as 20j + 10 ms).
"""
from __future__ import annotations

import numpy as np


def _integral(cumsum: np.ndarray, feats: np.ndarray, u: np.ndarray) -> np.ndarray:
    """Integral (in frame units) of the piecewise-constant source from its first boundary to
    position ``u`` (frames from that boundary), extended by the edge frames outside [0, n]."""
    n = len(feats)
    k = np.clip(np.floor(u).astype(np.int64), 0, n - 1)
    return cumsum[k] + (u - k)[:, None] * feats[k]


def align_to_mel(feats: np.ndarray, first_center_s: float, period_s: float, n_frames: int,
                 hop_size: int, sample_rate: int) -> np.ndarray:
    """Area-interpolate ``feats`` onto ``n_frames`` mel frames.

    Args:
        feats: (F, D) features, frame j centred at ``first_center_s + j * period_s`` seconds.
        first_center_s, period_s: source time stamps, seconds.
        n_frames: mel length T (frames of ``hop_size`` samples at ``sample_rate`` Hz).
    Returns: float32 (n_frames, D).
    Raises: ValueError if ``feats`` is not 2-D with at least one frame, or ``n_frames`` < 1.
    """
    feats = np.asarray(feats, dtype=np.float64)
    if feats.ndim != 2 or feats.shape[0] == 0:
        raise ValueError(f"features must be (frames >= 1, dim), got shape {feats.shape}")
    if n_frames < 1:
        raise ValueError(f"n_frames must be >= 1, got {n_frames}")
    cumsum = np.concatenate([np.zeros((1, feats.shape[1])), np.cumsum(feats, axis=0)])
    start0 = first_center_s - period_s / 2
    edges = np.arange(n_frames + 1) * (hop_size / sample_rate)
    u = (edges - start0) / period_s
    area = _integral(cumsum, feats, u)
    width = u[1:] - u[:-1]
    return ((area[1:] - area[:-1]) / width[:, None]).astype(np.float32)
