"""F0 accuracy of a conversion, frame by frame, against the key-shifted source F0.

Both contours are in Hz on the same frames with 0 meaning unvoiced (the layout of
``processors.f0.extract_f0``). Three scores, the usual ones of singing voice conversion
evaluation (e.g. Amphion's ``evaluation/metrics/f0``; SVCC 2023, Huang et al. 2023):

* FPC: Pearson correlation coefficient of the two contours (Hz) on frames voiced in both;
* F0 RMSE in cents: sqrt(mean((1200 * log2(f_out / f_ref))^2)) on frames voiced in both;
* V/UV error: fraction of frames whose voicing decisions differ.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def estimate_key_shift(source_f0: np.ndarray, output_f0: np.ndarray) -> float:
    """Whole semitones nearest to the median interval 12 * log2(f_out / f_src) over frames voiced in
    both (common first frames when lengths differ): the key shift an autoshift run most likely
    applied. 0.0 when no frame is voiced in both."""
    n = min(len(source_f0), len(output_f0))
    src = np.asarray(source_f0[:n], dtype=np.float64)
    out = np.asarray(output_f0[:n], dtype=np.float64)
    both = (src > 0) & (out > 0)
    if not both.any():
        return 0.0
    return float(np.round(np.median(12.0 * np.log2(out[both] / src[both]))))


@dataclass
class F0Scores:
    """Scores of one output. ``fpc`` and ``rmse_cents`` are NaN when fewer than two frames are
    voiced in both contours (``fpc`` also when either contour is constant there)."""

    fpc: float
    rmse_cents: float
    vuv_error: float
    n_frames: int
    n_voiced_both: int


def f0_scores(reference_f0: np.ndarray, output_f0: np.ndarray) -> F0Scores:
    """Compare ``output_f0`` with ``reference_f0`` (both (T,) Hz, 0 = unvoiced; the reference is
    the source F0 already moved by the key shift, see :func:`processors.pitch_shift.shift_f0`).

    Contours of different lengths are compared on their common first min(T_ref, T_out) frames.
    Raises: ValueError if either contour is empty or not 1-D, or holds negative or non-finite values.
    """
    ref = np.asarray(reference_f0, dtype=np.float64)
    out = np.asarray(output_f0, dtype=np.float64)
    for name, f0 in (("reference", ref), ("output", out)):
        if f0.ndim != 1 or f0.size == 0:
            raise ValueError(f"{name} F0 must be a non-empty 1-D array, got shape {f0.shape}")
        if not np.all(np.isfinite(f0)) or np.any(f0 < 0):
            raise ValueError(f"{name} F0 holds negative or non-finite values")
    n = min(ref.size, out.size)
    ref, out = ref[:n], out[:n]
    ref_voiced, out_voiced = ref > 0, out > 0
    both = ref_voiced & out_voiced
    vuv_error = float(np.mean(ref_voiced != out_voiced))
    fpc = rmse = float("nan")
    if both.sum() >= 2:
        cents = 1200.0 * np.log2(out[both] / ref[both])
        rmse = float(np.sqrt(np.mean(cents ** 2)))
        if np.std(ref[both]) > 0 and np.std(out[both]) > 0:
            fpc = float(np.corrcoef(ref[both], out[both])[0, 1])
    return F0Scores(fpc=fpc, rmse_cents=rmse, vuv_error=vuv_error, n_frames=n,
                    n_voiced_both=int(both.sum()))
