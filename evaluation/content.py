"""Content distance: how far a converted output's sung content is from its source's, without ASR.

Both recordings are encoded by the Whisper encoder of the CER model (Radford et al. 2022,
:meth:`evaluation.cer.WhisperTranscriber.encode`: 16 kHz input, one frame every 20 ms). The two
feature sequences are aligned by dynamic time warping (Sakoe & Chiba 1978, "Dynamic programming
algorithm optimization for spoken word recognition"; librosa's DTW with steps (1, 1), (1, 0), (0, 1)
of equal weight, no band) on the cosine distance between frames, and the distance is the mean cosine
distance over the pairs of the optimal path. 0 for identical inputs; it grows as the content
(phonemes, words) differs. It needs no decoding, so a decoding that loops (the failure that can push
one take's CER far above 1) cannot inflate it.
"""
from __future__ import annotations

import numpy as np


def content_distance(output: np.ndarray, source: np.ndarray) -> float:
    """Mean cosine distance, 1 - cos(output_i, source_j), over the DTW path between two feature
    sequences (module docstring).

    Args:
        output: (N, D) features of the output, one row per frame.
        source: (M, D) features of the source, the same kind of frames.
    Returns: a float in [0, 2]; 0 when the sequences are identical. Time and memory grow as N * M
        (two float64 matrices: 36 MB for two 30 s recordings of 1500 Whisper frames each).
    Raises: ValueError if either sequence is not 2-D or has no frames, the feature sizes differ,
        or a frame is all zeros (its cosine is undefined).
    """
    import librosa

    a = np.asarray(output, dtype=np.float64)
    b = np.asarray(source, dtype=np.float64)
    if a.ndim != 2 or b.ndim != 2 or not len(a) or not len(b) or a.shape[1] != b.shape[1]:
        raise ValueError(f"need two (frames, D) feature sequences with frames, got shapes "
                         f"{a.shape} and {b.shape}")
    norm_a, norm_b = np.linalg.norm(a, axis=1), np.linalg.norm(b, axis=1)
    if not (np.all(norm_a > 0) and np.all(norm_b > 0)):
        raise ValueError("a feature frame is all zeros: its cosine distance is undefined")
    _, path = librosa.sequence.dtw(X=a.T, Y=b.T, metric="cosine")
    i, j = path[:, 0], path[:, 1]
    cosine = np.sum(a[i] * b[j], axis=1) / (norm_a[i] * norm_b[j])
    return float(np.mean(np.clip(1.0 - cosine, 0.0, 2.0)))
