"""The per-frame acoustic features of one utterance (stage 1 and inference on a new song): log-mel,
energy, F0 and the unvoiced flag, all on the same T mel frames."""
from __future__ import annotations

import numpy as np

from processors.f0 import extract_f0
from processors.mel import mel_and_energy
from utils.schema import PreprocessConfig


def acoustic_features(wav: np.ndarray, cfg: PreprocessConfig) -> dict[str, np.ndarray]:
    """Mel, energy, F0 and uv of one utterance.

    Args:
        wav: (samples,) float waveform at ``cfg.sample_rate`` Hz, at least one hop long.
        cfg: the ``preprocess`` config.
    Returns: dict with
        ``mel`` (n_mel, T) float32 log-mel (processors/mel.py, un-normalised),
        ``energy`` (T,) float32 L2 norm of each linear mel column,
        ``f0`` (T,) float32 Hz, 0 where unvoiced (processors/f0.py, on the mel frame times),
        ``uv`` (T,) bool, True where unvoiced (f0 == 0); T = samples // hop_size.
    Raises:
        ValueError: a signal shorter than one hop.
        processors.f0.F0Error / F0ExtractorUnavailable: from the pitch tracker.
    """
    mel, energy = mel_and_energy(wav, cfg)
    f0 = extract_f0(wav, cfg.sample_rate, cfg, mel.shape[1])
    return {"mel": mel.astype(np.float32), "energy": energy.astype(np.float32), "f0": f0,
            "uv": f0 == 0}
