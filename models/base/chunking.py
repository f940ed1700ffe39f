"""Chunked conversion of long audio with bounded memory: cut a song at quiet points into chunks of at
most ``chunk_seconds`` that overlap by ``chunk_overlap``, convert them a batch at a time, and join
the converted chunks with a raised-cosine crossfade over each overlap.

Units: a chunk plan is in mel frames (``hop_size`` samples each, frame i covering samples
[i * hop, (i + 1) * hop)); joined audio is in samples. The joined output is one preallocated buffer
of the song's length that each chunk is added into as soon as it is converted, so the models'
working memory depends on the chunk and batch sizes only, not on the song's length.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator, Sequence

import numpy as np


@dataclass(frozen=True)
class Chunk:
    """Frames [start, end) of the song, converted in one forward pass."""

    start: int
    end: int

    @property
    def n_frames(self) -> int:
        return self.end - self.start


def seconds_to_frames(seconds: float, sample_rate: int, hop_size: int) -> int:
    """Whole mel frames in ``seconds`` (rounded down), for chunk sizes given in seconds."""
    return int(seconds * sample_rate // hop_size)


def plan_chunks(energy: np.ndarray, max_frames: int, overlap_frames: int) -> list[Chunk]:
    """Cut a song into chunks of at most ``max_frames`` frames that overlap by ``overlap_frames``.

    Each cut is centred on the quietest stretch the length limit allows: between consecutive cuts
    c_k < c_{k+1} the chunk spans [c_k - h, c_{k+1} + h] (h = overlap_frames // 2, clipped to the
    song), and c_{k+1} is the frame in [c_k + step // 2, c_k + step] (step = max_frames - 2h) whose
    energy, averaged over the 2h + 1 frames of the crossfade around it, is lowest. A song of at most
    ``max_frames`` frames is one chunk.

    Args:
        energy: (T,) per-frame energy (any non-negative loudness measure; linear mel-column norm).
        max_frames: longest chunk, frames.
        overlap_frames: frames shared by neighbouring chunks (rounded down to even).
    Returns: chunks in order; the first starts at 0, the last ends at T; neighbours overlap by
        exactly 2h frames.
    Raises: ValueError if the song is empty, or the overlap is so long that a chunk would reach
        past its neighbour's neighbour (step // 2 <= 2h; keep chunk_overlap under a third of
        chunk_seconds).
    """
    energy = np.asarray(energy, dtype=np.float64)
    total = len(energy)
    if total == 0:
        raise ValueError("cannot plan chunks for an empty song (0 frames)")
    if total <= max_frames:
        return [Chunk(0, total)]
    half = overlap_frames // 2
    step = max_frames - 2 * half
    if step // 2 <= 2 * half:
        raise ValueError(f"a chunk overlap of {overlap_frames} frames is too long for chunks of "
                         f"{max_frames} frames: keep chunk_overlap under a third of chunk_seconds")
    smooth = np.convolve(energy, np.ones(2 * half + 1) / (2 * half + 1), mode="same")
    cuts = [0]
    while total - cuts[-1] + (half if len(cuts) > 1 else 0) > max_frames:
        lo, hi = cuts[-1] + step // 2, cuts[-1] + step
        cuts.append(lo + int(np.argmin(smooth[lo:hi + 1])))
    cuts.append(total)
    return [Chunk(max(0, a - half), min(total, b + half)) for a, b in zip(cuts[:-1], cuts[1:])]


def batched(chunks: Sequence[Chunk], batch_size: int) -> Iterator[list[int]]:
    """Indices of ``chunks`` in consecutive groups of at most ``batch_size``."""
    if batch_size < 1:
        raise ValueError(f"batch size must be at least 1, got {batch_size}")
    for i in range(0, len(chunks), batch_size):
        yield list(range(i, min(i + batch_size, len(chunks))))


def raised_cosine_ramp(n_samples: int) -> np.ndarray:
    """Fade-in weights r(n) = sin^2(pi (n + 0.5) / (2 n_samples)), n = 0 .. n_samples - 1, float32:
    rising from near 0 to near 1, and r(n) + r(n_samples - 1 - n) = 1, so a fade-in paired with the
    reversed ramp as fade-out keeps the sum of the weights at exactly 1."""
    return (np.sin(np.pi * (np.arange(n_samples) + 0.5) / (2 * n_samples)) ** 2).astype(np.float32)


class CrossfadeJoiner:
    """Overlap-add of converted chunks into one signal of ``chunks[-1].end * hop_size`` samples.

    Within the overlap of chunks k and k + 1 (L = overlap * hop samples) the earlier chunk fades out
    with 1 - r and the later fades in with r, r(n) = sin^2(pi (n + 0.5) / (2L)) (a raised cosine), so
    the weights sum to exactly 1 at every sample and a join is as smooth as the two signals are.
    Chunks may be added in any order; ``output`` is final once every chunk has been added.
    """

    def __init__(self, chunks: Sequence[Chunk], hop_size: int):
        self.chunks = list(chunks)
        self.hop = hop_size
        self.output = np.zeros(self.chunks[-1].end * hop_size, dtype=np.float32)

    def add(self, index: int, wav: np.ndarray) -> None:
        """Add chunk ``index``'s converted audio, shape (n_frames * hop_size,).

        Raises: ValueError if its length is not the chunk's frames times the hop.
        """
        chunk = self.chunks[index]
        expected = chunk.n_frames * self.hop
        if wav.shape != (expected,):
            raise ValueError(f"chunk {index} (frames {chunk.start}-{chunk.end}) gave audio of shape "
                             f"{wav.shape}, expected ({expected},)")
        weight = np.ones(expected, dtype=np.float32)
        if index > 0:
            fade_in = (self.chunks[index - 1].end - chunk.start) * self.hop
            weight[:fade_in] = raised_cosine_ramp(fade_in)
        if index + 1 < len(self.chunks):
            fade_out = (chunk.end - self.chunks[index + 1].start) * self.hop
            weight[expected - fade_out:] *= raised_cosine_ramp(fade_out)[::-1]
        self.output[chunk.start * self.hop:chunk.end * self.hop] += weight * wav
