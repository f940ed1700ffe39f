"""Pitch arithmetic for conversion: key shift in semitones, autoshift to a target singer's median F0,
and clamping to the model's F0 range.

F0 contours are (T,) float arrays in Hz with 0 on unvoiced frames; every function keeps unvoiced
frames at 0. A shift of s semitones multiplies F0 by 2 ** (s / 12) (12-tone equal temperament);
shifts are limited to +-MAX_KEY_SHIFT semitones (4 octaves: already far outside any singer's range,
where the clamp to the model's F0 range would flatten the melody).
"""
from __future__ import annotations

import logging
import math

import numpy as np

log = logging.getLogger(__name__)

MAX_KEY_SHIFT = 48


def check_key_shift(semitones: float, what: str = "key shift") -> float:
    """``semitones`` as a float if it is finite and within +-MAX_KEY_SHIFT.

    Raises: ValueError naming ``what`` and the allowed range.
    """
    semitones = float(semitones)
    if not (math.isfinite(semitones) and abs(semitones) <= MAX_KEY_SHIFT):
        raise ValueError(f"{what} must be within -{MAX_KEY_SHIFT} .. +{MAX_KEY_SHIFT} semitones "
                         f"(4 octaves), got {semitones:g}")
    return semitones


def shift_f0(f0: np.ndarray, semitones: float) -> np.ndarray:
    """F0 raised by ``semitones`` (negative lowers): f0 * 2 ** (semitones / 12), shape (T,) Hz.

    Raises: ValueError for a shift beyond +-MAX_KEY_SHIFT semitones (:func:`check_key_shift`).
    """
    semitones = check_key_shift(semitones)
    return np.asarray(f0, dtype=np.float32) * np.float32(2.0 ** (semitones / 12.0))


def voiced_median(f0: np.ndarray) -> float | None:
    """Median F0 (Hz) over voiced frames (f0 > 0), or None when no frame is voiced."""
    f0 = np.asarray(f0)
    voiced = f0[f0 > 0]
    return float(np.median(voiced)) if voiced.size else None


def autoshift_semitones(source_f0: np.ndarray, target_median: float, round_to_semitone: bool) -> float:
    """Semitones that move the source's voiced median F0 onto ``target_median`` (Hz):
    12 * log2(target_median / source_median), rounded to the nearest whole semitone when
    ``round_to_semitone``. A source with no voiced frame gets 0 (logged).

    Raises: ValueError if ``target_median`` is not a positive number.
    """
    if not target_median > 0:
        raise ValueError(f"target median F0 must be positive, got {target_median!r} Hz")
    source_median = voiced_median(source_f0)
    if source_median is None:
        log.warning("autoshift: the source has no voiced frame; no key shift applied")
        return 0.0
    semitones = 12.0 * math.log2(target_median / source_median)
    return float(round(semitones)) if round_to_semitone else semitones


def clamp_f0(f0: np.ndarray, f0_min: float, f0_max: float, what: str = "F0") -> np.ndarray:
    """Voiced F0 values clamped into [f0_min, f0_max] Hz (unvoiced frames stay 0), shape (T,).
    Logs a warning giving how many frames were outside the range, naming ``what``."""
    f0 = np.asarray(f0, dtype=np.float32)
    voiced = f0 > 0
    outside = voiced & ((f0 < f0_min) | (f0 > f0_max))
    if outside.any():
        log.warning("%s: %d of %d voiced frames outside the model's range [%g, %g] Hz were clamped "
                    "(lowest %.1f Hz, highest %.1f Hz); consider another key shift",
                    what, int(outside.sum()), int(voiced.sum()), f0_min, f0_max,
                    float(f0[voiced].min()), float(f0[voiced].max()))
    return np.where(voiced, np.clip(f0, f0_min, f0_max), 0.0).astype(np.float32)
