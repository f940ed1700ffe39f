"""What every content extractor shares: 16 kHz input of any length, batched windows, stitching and
alignment to the mel frames (the model-specific part is :meth:`ContentExtractor.encode_windows`)."""
from __future__ import annotations

import numpy as np

from processors.content.align import align_to_mel
from processors.content.windows import split_windows, stitch
from utils.schema import PreprocessConfig

CONTENT_SAMPLE_RATE = 16000


class ContentExtractor:
    """Base of the Whisper and ContentVec extractors.

    Attributes (set by subclasses):
        dim: feature size D.
        frame_period_s: seconds between the model's frames (0.02 for both models).
        first_center_s: centre of the model's frame 0, seconds.
        samples_per_frame: 16 kHz samples per model frame (320); window starts are multiples of it.
        min_samples: shortest input (16 kHz samples) the model gives a frame for.
    """

    dim: int
    frame_period_s: float
    first_center_s: float
    samples_per_frame: int
    min_samples: int

    def __init__(self, pcfg: PreprocessConfig):
        self.hop_size = pcfg.hop_size
        self.sample_rate = pcfg.sample_rate
        self.batch_size = max(1, pcfg.content_batch_size)

    def encode_windows(self, windows: list[np.ndarray]) -> list[np.ndarray]:
        """Features of each window (16 kHz float32 (n_i,), n_i <= 30 s) in one forward pass:
        a list of float32 (F_i, dim), F_i the model's frame count for n_i samples."""
        raise NotImplementedError

    def encode_short(self, wav_16k: np.ndarray) -> np.ndarray:
        """Features of one window shorter than 30 s, encoded at its own length (the realtime path,
        models/base/streaming.py): float32 (F, dim). Models that take any length (ContentVec) use
        :meth:`encode_windows`; Whisper overrides this to skip its 30 s padding."""
        return self.encode_windows([np.asarray(wav_16k, dtype=np.float32)])[0]

    def extract_short(self, wav_16k: np.ndarray, n_frames: int) -> np.ndarray:
        """:meth:`encode_short` of one window, aligned to its ``n_frames`` mel frames: float32
        (n_frames, dim). Raises: ValueError for a window shorter than ``min_samples``."""
        wav = np.asarray(wav_16k, dtype=np.float32)
        if wav.ndim != 1 or wav.size < self.min_samples:
            raise ValueError(f"need a 1-D window of at least {self.min_samples} samples at 16 kHz, "
                             f"got shape {wav.shape}")
        return align_to_mel(self.encode_short(wav), self.first_center_s, self.frame_period_s,
                            n_frames, self.hop_size, self.sample_rate)

    def extract(self, wavs_16k: list[np.ndarray], n_frames: list[int]) -> list[np.ndarray]:
        """Content features of several utterances, aligned to their mel frames.

        Args:
            wavs_16k: float32 (samples,) waveforms at 16 kHz, any length (30 s windows with 5 s
                overlap, stitched: see :mod:`processors.content.windows`).
            n_frames: mel length T of each utterance (frames of hop_size at sample_rate).
        Returns: float32 (T_i, dim) per utterance.
        Raises: ValueError if the lists differ in length, a waveform is not 1-D, or it is shorter
            than ``min_samples``.
        """
        if len(wavs_16k) != len(n_frames):
            raise ValueError(f"{len(wavs_16k)} waveforms but {len(n_frames)} frame counts")
        jobs: list[tuple[int, int, np.ndarray]] = []  # (utterance, first frame, window samples)
        for i, wav in enumerate(wavs_16k):
            wav = np.asarray(wav, dtype=np.float32)
            if wav.ndim != 1 or wav.size < self.min_samples:
                raise ValueError(f"utterance {i}: need a 1-D waveform of at least {self.min_samples} "
                                 f"samples at 16 kHz, got shape {wav.shape}")
            for start, end in split_windows(wav.size, CONTENT_SAMPLE_RATE):
                jobs.append((i, start // self.samples_per_frame, wav[start:end]))
        pieces: list[list[tuple[int, np.ndarray]]] = [[] for _ in wavs_16k]
        for b in range(0, len(jobs), self.batch_size):
            batch = jobs[b:b + self.batch_size]
            for (i, first, _), feats in zip(batch, self.encode_windows([w for _, _, w in batch])):
                pieces[i].append((first, feats))
        return [align_to_mel(stitch(p), self.first_center_s, self.frame_period_s, t,
                             self.hop_size, self.sample_rate) for p, t in zip(pieces, n_frames)]
