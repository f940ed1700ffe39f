"""Scores every converted output: F0 accuracy against the key-shifted source, MCD against a
same-content reference, speaker similarity to the target singer's references and to the source, and
CER of the output's transcript against the source's. One row (a dict over :data:`COLUMNS`) per
output; a metric that cannot be computed is NaN and the row's ``notes`` says why.

Expensive per-recording results (source F0, speaker embeddings, source transcripts) are computed once
and reused, as each source is usually converted to several singers.
"""
from __future__ import annotations

import fnmatch
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from evaluation.cer import WHISPER_RATE, WhisperTranscriber, character_error_rate
from evaluation.f0_metrics import estimate_key_shift, f0_scores
from evaluation.layout import Conversion, LayoutError, SourceIndex, match_singer
from evaluation.mcd import mel_cepstral_distortion
from evaluation.speaker import EMBEDDING_RATE, SpeakerEncoder, cosine_similarity, mean_embedding
from processors.f0 import F0Error, extract_f0
from processors.mel import n_mel_frames
from processors.pitch_shift import shift_f0
from utils.audio import AudioError, load_audio
from utils.schema import PreprocessConfig

log = logging.getLogger(__name__)

COLUMNS = ["output", "source", "target", "key_shift", "fpc", "f0_rmse_cents", "vuv_error", "mcd_db",
           "sim_target", "sim_source", "cer", "notes"]
METRICS = ["fpc", "f0_rmse_cents", "vuv_error", "mcd_db", "sim_target", "sim_source", "cer"]
# Outputs whose length differs from the source's by more than this fraction get a note: frame-wise
# F0 comparison assumes the conversion keeps the timing.
LENGTH_TOLERANCE = 0.02


@dataclass
class EvalSettings:
    """How to score. ``preprocess``: F0 tracker, hop and analysis rate (an experiment's
    ``cfg.preprocess``); ``key_shift``: semitones applied at conversion, or "auto" to estimate them
    per output (:func:`~evaluation.f0_metrics.estimate_key_shift`, for autoshift runs), with
    per-target values in ``key_shift_by_target`` (names matched as by
    :func:`~evaluation.layout.match_singer`); ``language``: "en" enables CER; ``cer_sources``:
    globs on the source name or path that CER is limited to (empty: every source)."""

    preprocess: PreprocessConfig
    key_shift: float | str = 0.0
    key_shift_by_target: dict[str, float | str] = field(default_factory=dict)
    language: str | None = None
    whisper_path: Path = Path("pretrained/whisper/tiny.en.pt")
    cer_sources: list[str] = field(default_factory=list)
    device: str = "cpu"


class Evaluator:
    """Scores :class:`~evaluation.layout.Conversion` s.

    Args:
        settings: see :class:`EvalSettings`.
        sources: where each output's source recording is found.
        references: {singer name: reference recordings}, matched to targets by
            :func:`evaluation.layout.match_singer`.
        same_content: {(source name, target): recording of the target singer with the source's
            content}, MCD references beyond self-conversion.
    """

    def __init__(self, settings: EvalSettings, sources: SourceIndex,
                 references: dict[str, list[Path]],
                 same_content: dict[tuple[str, str], Path] | None = None) -> None:
        self.settings = settings
        self.sources = sources
        self.references = references
        self.same_content = same_content or {}
        self._f0: dict[Path, np.ndarray] = {}
        self._embeddings: dict[Path, np.ndarray | None] = {}
        self._transcripts: dict[Path, str] = {}
        self._encoder: SpeakerEncoder | None = None
        self._transcriber: WhisperTranscriber | None = None
        self._whisper_missing = False

    # -- one output -------------------------------------------------------------------------------
    def evaluate(self, conv: Conversion) -> dict:
        """One row for ``conv``: COLUMNS -> value (floats, NaN where not computed)."""
        by_target = self.settings.key_shift_by_target
        named = match_singer(conv.target, by_target)
        shift = self.settings.key_shift if named is None else by_target[named]
        row = {c: math.nan for c in METRICS}
        row.update(output=str(conv.path), source=conv.source_name, target=conv.target,
                   key_shift=math.nan if shift == "auto" else shift)
        notes: list[str] = []
        try:
            source = self.sources.lookup(conv.source_name)
            sr = self.settings.preprocess.sample_rate
            output = load_audio(conv.path, sr)
            self._f0_metrics(row, notes, output, source.path, shift)
            self._mcd(row, notes, conv, output, source)
            output_16k = load_audio(conv.path, EMBEDDING_RATE)
            self._speaker(row, notes, conv, output_16k, source.path)
            self._cer(row, notes, conv, output_16k, source.path)
        except (LayoutError, AudioError) as e:
            notes.append(f"error: {e}")
            log.warning("%s: %s", conv.path, e)
        row["notes"] = "; ".join(notes)
        return row

    def _f0_metrics(self, row: dict, notes: list, output: np.ndarray, source_path: Path,
                    shift: float | str) -> None:
        pcfg = self.settings.preprocess
        try:
            if source_path not in self._f0:
                source = load_audio(source_path, pcfg.sample_rate)
                self._f0[source_path] = extract_f0(source, pcfg.sample_rate, pcfg,
                                                   n_mel_frames(len(source), pcfg.hop_size))
            out_f0 = extract_f0(output, pcfg.sample_rate, pcfg, n_mel_frames(len(output), pcfg.hop_size))
        except F0Error as e:
            notes.append(f"f0: {e}")
            return
        src_f0 = self._f0[source_path]
        if abs(len(out_f0) - len(src_f0)) > LENGTH_TOLERANCE * len(src_f0):
            notes.append(f"length {len(out_f0)} frames vs source {len(src_f0)}: F0 compared on the "
                         f"common start")
        if shift == "auto":
            shift = row["key_shift"] = estimate_key_shift(src_f0, out_f0)
            notes.append("key shift estimated")
        scores = f0_scores(shift_f0(src_f0, shift), out_f0)
        row.update(fpc=scores.fpc, f0_rmse_cents=scores.rmse_cents, vuv_error=scores.vuv_error)
        if scores.n_voiced_both < 2:
            notes.append("f0: fewer than 2 frames voiced in both")

    def _mcd(self, row: dict, notes: list, conv: Conversion, output: np.ndarray, source) -> None:
        reference = self.same_content.get((conv.source_name, conv.target))
        if reference is None and source.singer and match_singer(conv.target, [source.singer]):
            reference = source.path  # self-conversion: the source is the same-content reference
        if reference is None:
            notes.append("mcd: no same-content reference")
            return
        sr = self.settings.preprocess.sample_rate
        row["mcd_db"] = mel_cepstral_distortion(output, load_audio(reference, sr), sr)

    def _embedding(self, path: Path, wav_16k: np.ndarray | None = None) -> np.ndarray | None:
        if path not in self._embeddings:
            if self._encoder is None:
                self._encoder = SpeakerEncoder(self.settings.device)
            try:
                wav = load_audio(path, EMBEDDING_RATE) if wav_16k is None else wav_16k
                self._embeddings[path] = self._encoder.embed(wav)
            except ValueError as e:  # AudioError is a ValueError
                log.warning("%s: no speaker embedding: %s", path, e)
                self._embeddings[path] = None
        return self._embeddings[path]

    def _speaker(self, row: dict, notes: list, conv: Conversion, output_16k: np.ndarray,
                 source_path: Path) -> None:
        out = self._embedding(conv.path, output_16k)
        if out is None:
            notes.append("speaker: output too short or silent for an embedding")
            return
        source = self._embedding(source_path)
        if source is not None:
            row["sim_source"] = cosine_similarity(out, source)
        name = match_singer(conv.target, self.references)
        if name is None:
            notes.append("speaker: no reference recordings for the target")
            return
        # A self-conversion's source is not also its own reference.
        refs = [self._embedding(p) for p in self.references[name] if p.resolve() != source_path.resolve()]
        refs = [e for e in refs if e is not None]
        if not refs:
            notes.append("speaker: no usable reference recordings for the target")
            return
        row["sim_target"] = cosine_similarity(out, mean_embedding(refs))

    def _cer(self, row: dict, notes: list, conv: Conversion, output_16k: np.ndarray,
             source_path: Path) -> None:
        settings = self.settings
        if settings.language != "en":
            return
        if settings.cer_sources and not any(fnmatch.fnmatch(conv.source_name, g) or
                                            fnmatch.fnmatch(str(source_path), g)
                                            for g in settings.cer_sources):
            return
        if self._transcriber is None and not self._whisper_missing:
            try:
                self._transcriber = WhisperTranscriber(settings.whisper_path, settings.device)
            except FileNotFoundError as e:
                self._whisper_missing = True
                log.warning("CER skipped: %s", e)
        if self._transcriber is None:
            notes.append("cer: no Whisper checkpoint")
            return
        if source_path not in self._transcripts:
            self._transcripts[source_path] = self._transcriber.transcribe(
                load_audio(source_path, WHISPER_RATE))
        reference = self._transcripts[source_path]
        hypothesis = self._transcriber.transcribe(output_16k)
        row["cer"] = character_error_rate(reference, hypothesis)
        if math.isnan(row["cer"]):
            notes.append("cer: empty source transcript")


def mean_row(rows: list[dict]) -> dict:
    """The MEAN row: each metric averaged over the rows where it is not NaN (NaN if none);
    ``notes`` gives how many rows each mean covers when they differ."""
    mean = {c: "" for c in COLUMNS}
    mean["output"] = mean["source"] = "MEAN"
    counts = []
    for metric in METRICS:
        values = [r[metric] for r in rows if not math.isnan(r[metric])]
        mean[metric] = float(np.mean(values)) if values else math.nan
        counts.append(f"{metric} n={len(values)}")
    mean["notes"] = f"{len(rows)} outputs; " + ", ".join(counts)
    mean["key_shift"] = math.nan
    return mean
