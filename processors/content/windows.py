"""Any-length input for content models that see at most 30 s: overlapping windows and stitching.

A signal longer than ``WINDOW_SECONDS`` is cut into windows of 30 s starting every ``HOP_SECONDS``
(25 s, so neighbours overlap by 5 s and no frame lies in three windows); the last window ends at the
end of the signal. Each window's features are computed alone, then put back on the file's frame grid;
in an overlap the two windows are cross-faded linearly, so every frame has features, the seams are
smooth and each frame leans on the window where it has the most context. Whisper is trained on 30 s
inputs; Amphion truncates there and leaves the rest of a longer file without features.
"""
from __future__ import annotations

import numpy as np

WINDOW_SECONDS = 30.0
HOP_SECONDS = 25.0


def split_windows(n_samples: int, sample_rate: int) -> list[tuple[int, int]]:
    """(start, end) sample ranges covering ``n_samples``: one range when it fits in a window.

    Window starts are multiples of HOP_SECONDS * sample_rate samples (400000 at 16 kHz, a whole
    number of 20 ms frames), so window features land on the file's frame grid exactly.
    """
    window = int(round(WINDOW_SECONDS * sample_rate))
    hop = int(round(HOP_SECONDS * sample_rate))
    if n_samples <= window:
        return [(0, n_samples)]
    n_windows = -(-(n_samples - window) // hop) + 1
    return [(k * hop, min(k * hop + window, n_samples)) for k in range(n_windows)]


def stitch(pieces: list[tuple[int, np.ndarray]]) -> np.ndarray:
    """Join window features on one frame grid, cross-fading where neighbours overlap.

    Args: pieces: (first frame index in the file, (F_k, D) features), ordered by start, each window
        overlapping at most its two neighbours and ending after the previous one.
    Returns: float32 (frames, D), frames = the last piece's end.
    """
    total = max(start + len(f) for start, f in pieces)
    out = np.zeros((total, pieces[0][1].shape[1]), dtype=np.float64)
    weight = np.zeros(total, dtype=np.float64)
    for k, (start, feats) in enumerate(pieces):
        end = start + len(feats)
        mid = np.arange(start, end) + 0.5  # frame midpoints, in frames
        w = np.ones(len(feats))
        if k > 0:
            prev_end = pieces[k - 1][0] + len(pieces[k - 1][1])
            if prev_end > start:  # fade in over the overlap with the previous window
                w *= np.clip((mid - start) / (prev_end - start), 0.0, 1.0)
        if k + 1 < len(pieces):
            next_start = pieces[k + 1][0]
            if end > next_start:  # fade out over the overlap with the next window
                w *= np.clip((end - mid) / (end - next_start), 0.0, 1.0)
        out[start:end] += w[:, None] * feats
        weight[start:end] += w
    return (out / weight[:, None]).astype(np.float32)
