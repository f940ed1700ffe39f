"""Log-mel distances of a conversion: mel L1 against a same-timing reference, and the global variance
(GV) of the log-mel against a singer's real recordings.

The log-mel is Cantor's one mel (``processors.mel.mel_spectrogram``: natural log of the magnitude
mel, (n_mel, T)), with the experiment's preprocess settings, so it is the feature the acoustic model
predicts and the vocoder reads.

GV (Toda and Tokuda 2007, "A speech parameter generation algorithm considering global variance for
HMM-based speech synthesis", eq. 13) is, per mel bin, the variance over frames of the feature
sequence. Over-smoothed outputs (a conditional-mean prediction) have less of it than real speech,
noisy ones more. Only active frames count: frames whose mean log-mel is within ``ACTIVE_RANGE_DB`` of
the recording's loudest frame, so pauses do not dominate the variance. The GV difference in dB is

    gv_db = mean over bins b of 10 * log10(GV_out[b] / GV_ref[b])

below 0 for a smoothed (muffled) spectrum, 0 for a spectrum as varied as the reference's. A singer's
reference GV is the per-bin mean of the GVs of their recordings, so differences between songs do not
count as variance.
"""
from __future__ import annotations

import numpy as np

from utils.schema import PreprocessConfig

ACTIVE_RANGE_DB = 40.0
# ACTIVE_RANGE_DB as a difference of natural-log amplitudes: 20 log10(x) dB = (20 / ln 10) ln(x).
_ACTIVE_RANGE_LN = ACTIVE_RANGE_DB * np.log(10.0) / 20.0


def log_mel(wav: np.ndarray, pcfg: PreprocessConfig) -> np.ndarray:
    """Cantor's log-mel of a waveform (samples,) at ``pcfg.sample_rate``: float64 (n_mel, T).

    Raises: ValueError if the waveform is shorter than one hop.
    """
    from processors.mel import mel_spectrogram

    return mel_spectrogram(np.asarray(wav, dtype=np.float32), pcfg).numpy().astype(np.float64)


def mel_l1(output_mel: np.ndarray, reference_mel: np.ndarray) -> float:
    """Mean absolute difference of two log-mels (n_mel, T) of the same timing, frame i against frame
    i on the common first frames (natural-log units). 0 for identical inputs.

    Raises: ValueError if the bin counts differ or either has no frame.
    """
    if output_mel.shape[0] != reference_mel.shape[0]:
        raise ValueError(f"mel bins differ: {output_mel.shape[0]} vs {reference_mel.shape[0]}")
    n = min(output_mel.shape[1], reference_mel.shape[1])
    if n == 0:
        raise ValueError("a log-mel without frames")
    return float(np.mean(np.abs(output_mel[:, :n] - reference_mel[:, :n])))


def global_variance(mel: np.ndarray) -> np.ndarray:
    """Per-bin variance over the active frames (module docstring) of a log-mel (n_mel, T): (n_mel,).

    Raises: ValueError if fewer than two frames are active.
    """
    level = mel.mean(axis=0)
    active = mel[:, level >= level.max() - _ACTIVE_RANGE_LN]
    if active.shape[1] < 2:
        raise ValueError(f"{active.shape[1]} active frame(s): no variance over frames")
    return active.var(axis=1)


def gv_difference_db(output_gv: np.ndarray, reference_gv: np.ndarray) -> float:
    """mean_b 10 log10(output_gv[b] / reference_gv[b]) in dB, both (n_mel,) (module docstring);
    bins with zero variance in either are left out (NaN if all are).

    Raises: ValueError if the shapes differ.
    """
    if output_gv.shape != reference_gv.shape:
        raise ValueError(f"GV shapes differ: {output_gv.shape} vs {reference_gv.shape}")
    ok = (output_gv > 0) & (reference_gv > 0)
    if not ok.any():
        return float("nan")
    return float(np.mean(10.0 * np.log10(output_gv[ok] / reference_gv[ok])))
