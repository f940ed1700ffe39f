"""Speaker similarity with Resemblyzer's voice encoder (GE2E, Wan et al. 2018; the weights ship inside
the ``resemblyzer`` wheel, so nothing is downloaded).

An utterance embedding is Resemblyzer's ``embed_utterance`` of the 16 kHz waveform after its own
``preprocess_wav`` (volume normalisation, long silences removed): a unit vector of 256 floats. A
singer's embedding is the normalised mean of the utterance embeddings of their reference recordings
(as Resemblyzer's ``embed_speaker``). Similarity is the cosine of two embeddings, in [-1, 1].

The key-shift control: a conversion to a singer in another range is usually shifted by some
semitones, and a pitch shift alone already moves the embedding towards a higher or lower voice. The
control is the source merely pitch-shifted by the same semitones (librosa's phase-vocoder time
stretch + resampling, ``librosa.effects.pitch_shift``), scored against the same target references: a
conversion shows speaker similarity of its own only where it beats its control.
"""
from __future__ import annotations

import numpy as np

EMBEDDING_RATE = 16000
# Resemblyzer frames are 10 ms; fewer than this much voiced audio gives no stable embedding.
MIN_VOICED_SECONDS = 0.5


class SpeakerEncoder:
    """Resemblyzer's VoiceEncoder, loaded from the weights inside its wheel on ``device``."""

    def __init__(self, device: str = "cpu") -> None:
        from resemblyzer import VoiceEncoder

        self.encoder = VoiceEncoder(device, verbose=False)

    def embed(self, wav_16k: np.ndarray) -> np.ndarray:
        """Utterance embedding of a 16 kHz waveform (samples,): unit-norm float32 (256,).

        Raises: ValueError if less than MIN_VOICED_SECONDS of voiced audio remains after
        Resemblyzer's silence removal (e.g. a silent file).
        """
        from resemblyzer import preprocess_wav

        wav = preprocess_wav(np.asarray(wav_16k, dtype=np.float32))
        if wav.size < MIN_VOICED_SECONDS * EMBEDDING_RATE:
            raise ValueError(f"only {wav.size / EMBEDDING_RATE:.2f} s of voiced audio "
                             f"(need {MIN_VOICED_SECONDS} s) for a speaker embedding")
        return self.encoder.embed_utterance(wav)


def key_shift_control(wav_16k: np.ndarray, semitones: float) -> np.ndarray:
    """The source (samples,) at 16 kHz pitch-shifted by ``semitones`` with the same length: the
    key-shift control (module docstring). A shift of 0 returns the input unchanged."""
    if semitones == 0:
        return np.asarray(wav_16k, dtype=np.float32)
    import librosa

    return librosa.effects.pitch_shift(np.asarray(wav_16k, dtype=np.float32), sr=EMBEDDING_RATE,
                                       n_steps=float(semitones)).astype(np.float32)


def mean_embedding(embeddings: list[np.ndarray]) -> np.ndarray:
    """Singer embedding: the mean of utterance embeddings (each (256,)), renormalised to unit norm.

    Raises: ValueError if ``embeddings`` is empty.
    """
    if not embeddings:
        raise ValueError("no embeddings to average")
    mean = np.mean(np.stack(embeddings), axis=0)
    return mean / np.linalg.norm(mean)


def cosine_similarity(a: np.ndarray, b: np.ndarray) -> float:
    """Cosine of the angle between two embeddings (D,): a.b / (|a| |b|), in [-1, 1]."""
    return float(np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b)))
