"""Cut long recordings at silences into training clips (the audio-slicer algorithm of openvpi's
``audio-slicer``, as so-vits-svc-fork and DiffSinger use it, plus a maximum clip length).

Frame level: the RMS of ``hop`` seconds long hops (a window of two hops, librosa.feature.rms) in dB
relative to full scale. A run of at least ``min_interval`` seconds below ``threshold_db`` is a
silence. A silence no longer than ``2 * max_sil_kept`` is cut once, at its quietest hop; a longer one
is removed except ``max_sil_kept`` seconds on each side. Cuts are accepted in order only where the
clip they close is at least ``min_length`` long (otherwise the silence stays inside the clip). A
clip longer than ``max_length`` is then split at its quietest hop between ``min_length`` from
either end. A short last clip is joined to the clip before it when the two fit in ``max_length``.
Clips whose loudest hop stays below the threshold are dropped (near silence).

Units: every length is in seconds; positions inside are in hops. Audio is 1-D float32.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class SliceSettings:
    """The slicer's knobs (seconds, dB). Raises ValueError from :meth:`check` when inconsistent."""

    threshold_db: float = -40.0
    min_length: float = 3.0
    min_interval: float = 0.3
    hop: float = 0.01
    max_sil_kept: float = 0.5
    max_length: float = 15.0

    def check(self) -> None:
        """Raises: ValueError naming the setting that cannot work."""
        if not self.hop > 0:
            raise ValueError(f"hop must be > 0 s, got {self.hop}")
        if not self.min_interval >= self.hop:
            raise ValueError(f"min_interval ({self.min_interval} s) must be at least one hop "
                             f"({self.hop} s)")
        if not (0 < self.min_length and self.max_length >= 2 * self.min_length):
            raise ValueError(f"max_length ({self.max_length} s) must be at least twice min_length "
                             f"({self.min_length} s) so that a long clip can be split")
        if self.max_sil_kept < 0:
            raise ValueError(f"max_sil_kept must be >= 0 s, got {self.max_sil_kept}")


def frame_db(wav: np.ndarray, hop_samples: int) -> np.ndarray:
    """RMS level of each hop in dBFS (a window of two hops, centred), shape (ceil(len / hop),)."""
    import librosa
    rms = librosa.feature.rms(y=wav, frame_length=2 * hop_samples, hop_length=hop_samples,
                              center=True)[0]
    return 20.0 * np.log10(np.maximum(rms, 1e-10))


def _silences(silent: np.ndarray, min_frames: int) -> list[tuple[int, int]]:
    """[start, end) hop ranges of the runs of True at least ``min_frames`` long."""
    edges = np.flatnonzero(np.diff(np.concatenate([[0], silent.astype(np.int8), [0]])))
    return [(int(a), int(b)) for a, b in zip(edges[::2], edges[1::2]) if b - a >= min_frames]


def slice_audio(wav: np.ndarray, sample_rate: int, settings: SliceSettings = SliceSettings()
                ) -> list[tuple[int, int]]:
    """Where to cut ``wav`` (module docstring for the rules).

    Args: wav: (samples,) float32 mono; sample_rate: Hz.
    Returns: [(start, end)] sample ranges of the clips, in order, non-overlapping.
    Raises: ValueError for inconsistent settings (:meth:`SliceSettings.check`).
    """
    settings.check()
    hop = max(1, round(settings.hop * sample_rate))
    db = frame_db(wav, hop)[: -(-len(wav) // hop)]
    n = len(db)

    def to_hops(seconds: float) -> int:
        return int(round(seconds / settings.hop))

    min_len, max_len = to_hops(settings.min_length), to_hops(settings.max_length)
    keep = to_hops(settings.max_sil_kept)
    silent = db < settings.threshold_db
    # Leading and trailing silence keep at most max_sil_kept.
    loud = np.flatnonzero(~silent)
    if loud.size == 0:
        return []
    first, last = max(0, int(loud[0]) - keep), min(n, int(loud[-1]) + 1 + keep)
    clips: list[tuple[int, int]] = []
    start = first
    for a, b in _silences(silent, to_hops(settings.min_interval)):
        if a <= first or b >= last:
            continue
        if b - a <= 2 * keep:
            cut = a + int(np.argmin(db[a:b]))
            end, nxt = cut, cut
        else:
            end, nxt = a + keep, b - keep
        if end - start >= min_len:
            clips.append((start, end))
            start = nxt
    clips.append((start, last))
    if len(clips) > 1 and clips[-1][1] - clips[-1][0] < min_len \
            and clips[-1][1] - clips[-2][0] <= max_len:
        clips[-2:] = [(clips[-2][0], clips[-1][1])]
    split: list[tuple[int, int]] = []
    for a, b in clips:
        while b - a > max_len:
            lo, hi = a + min_len, min(a + max_len, b - min_len)
            cut = lo + int(np.argmin(db[lo:hi + 1]))
            split.append((a, cut))
            a = cut
        split.append((a, b))
    kept = [(a, b) for a, b in split if db[a:b].max(initial=-np.inf) >= settings.threshold_db]
    return [(a * hop, min(b * hop, len(wav))) for a, b in kept]
