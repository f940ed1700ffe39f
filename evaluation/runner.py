"""Scores every converted output. One row (a dict over :data:`COLUMNS`) per output; a metric that
cannot be computed is NaN and the row's ``notes`` says why.

* ``kind``: ``self`` when the target is the source's own singer (a self-reconstruction: the real
  recording is the answer, with the same timing), else ``cross``.
* F0 (``fpc``, ``f0_rmse_cents``, ``vuv_error``): against the key-shifted source F0, frame by frame.
* ``mcd_db``: against a same-content recording: frame by frame against the real take for a
  self-reconstruction, DTW-aligned against a ``same_content`` recording otherwise.
* ``mel_l1``: self-reconstructions only, log-mel L1 against the real take, frame by frame.
* ``gv_db``: log-mel global variance against the real take (self) or the target singer's reference
  recordings (cross); below 0 is a smoothed spectrum (:mod:`evaluation.spectral`).
* ``sim_target`` / ``sim_source``: speaker similarity to the target's references / to the source;
  ``sim_control``: the key-shift control's similarity to the same references, ``sim_gain`` =
  ``sim_target - sim_control`` (:func:`evaluation.speaker.key_shift_control`).
* ``cer``: CER of the output's transcript against the source's, in the source's ``language``;
  ``cer_capped`` = min(``cer``, 1), so one take whose decoding loops (CER 18.8 has been seen) weighs
  in the mean no more than one transcribed as nothing; ``cer_median``: empty in an output's row, the
  median of ``cer`` in the mean rows; ``cer_copy``: CER of the vocoder-only copy synthesis of the
  source (the best the vocoder allows), ``cer_rel`` = ``cer / cer_copy``.
* ``content_distance``: the ASR-free counterpart of CER: mean cosine distance between the Whisper
  encoder features of the output and of the source after DTW alignment (:mod:`evaluation.content`;
  0 for the source itself). Computed wherever CER is attempted (``language`` set, the source
  selected by ``cer_sources``, a usable Whisper checkpoint), whatever the language.

Expensive per-recording results (source F0, log-mel GV, speaker embeddings, source transcripts and
Whisper encoder features, copy syntheses) are computed once and reused, as each source is usually
converted to several singers.
"""
from __future__ import annotations

import fnmatch
import functools
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from evaluation.cer import WHISPER_RATE, WhisperTranscriber, character_error_rate
from evaluation.content import content_distance
from evaluation.f0_metrics import estimate_key_shift, f0_scores
from evaluation.layout import Conversion, LayoutError, SourceIndex, match_singer
from evaluation.mcd import mel_cepstral_distortion
from evaluation.spectral import global_variance, gv_difference_db, log_mel, mel_l1
from evaluation.speaker import (EMBEDDING_RATE, SpeakerEncoder, cosine_similarity, key_shift_control,
                                mean_embedding)
from processors.f0 import F0Error, extract_f0
from processors.mel import n_mel_frames
from processors.pitch_shift import shift_f0
from utils.audio import AudioError, load_audio
from utils.schema import PreprocessConfig

log = logging.getLogger(__name__)

COLUMNS = ["output", "source", "target", "kind", "key_shift", "fpc", "f0_rmse_cents", "vuv_error",
           "mcd_db", "mel_l1", "gv_db", "sim_target", "sim_control", "sim_gain", "sim_source",
           "language", "cer", "cer_capped", "cer_median", "cer_copy", "cer_rel", "content_distance",
           "notes"]
METRICS = ["fpc", "f0_rmse_cents", "vuv_error", "mcd_db", "mel_l1", "gv_db", "sim_target",
           "sim_control", "sim_gain", "sim_source", "cer", "cer_capped", "cer_median", "cer_copy",
           "cer_rel", "content_distance"]
# Outputs whose length differs from the source's by more than this fraction get a note: frame-wise
# F0 comparison assumes the conversion keeps the timing.
LENGTH_TOLERANCE = 0.02


@dataclass
class EvalSettings:
    """How to score. ``preprocess``: F0 tracker, hop, mel and analysis rate (an experiment's
    ``cfg.preprocess``); ``key_shift``: semitones applied at conversion, or "auto" to estimate them
    per output (:func:`~evaluation.f0_metrics.estimate_key_shift`, for autoshift runs), with
    per-target values in ``key_shift_by_target`` (names matched as by
    :func:`~evaluation.layout.match_singer`); ``language``: None (no CER), a Whisper language code,
    or "auto" (each source's language detected by Whisper); ``cer_sources``: globs on the source
    name or path that CER and content distance are limited to (empty: every source)."""

    preprocess: PreprocessConfig
    key_shift: float | str = 0.0
    key_shift_by_target: dict[str, float | str] = field(default_factory=dict)
    language: str | None = None
    whisper_path: Path = Path("pretrained/whisper/base.pt")
    cer_sources: list[str] = field(default_factory=list)
    device: str = "cpu"


class Evaluator:
    """Scores :class:`~evaluation.layout.Conversion` s (module docstring).

    Args:
        settings: see :class:`EvalSettings`.
        sources: where each output's source recording is found.
        references: {singer name: reference recordings}, matched to targets by
            :func:`evaluation.layout.match_singer`.
        same_content: {(source name, target): recording of the target singer with the source's
            content}, MCD references beyond self-conversion.
        copy_synthesis: source path -> the vocoder's resynthesis of its mel, (samples,) at 16 kHz;
            enables ``cer_copy`` and ``cer_rel``.
    """

    def __init__(self, settings: EvalSettings, sources: SourceIndex,
                 references: dict[str, list[Path]],
                 same_content: dict[tuple[str, str], Path] | None = None,
                 copy_synthesis: Callable[[Path], np.ndarray] | None = None) -> None:
        self.settings = settings
        self.sources = sources
        self.references = references
        self.same_content = same_content or {}
        self.copy_synthesis = copy_synthesis
        self._f0: dict[Path, np.ndarray] = {}
        self._gv: dict[Path, np.ndarray | None] = {}
        self._embeddings: dict[object, np.ndarray | None] = {}
        self._transcripts: dict[tuple[str, Path], str] = {}
        self._content: dict[Path, np.ndarray] = {}  # source -> Whisper encoder features
        self._languages: dict[Path, str] = {}
        self._encoder: SpeakerEncoder | None = None
        self._transcriber: WhisperTranscriber | None = None
        self._whisper_error: str | None = None

    # -- one output -------------------------------------------------------------------------------
    def evaluate(self, conv: Conversion) -> dict:
        """One row for ``conv``: COLUMNS -> value (floats, NaN where not computed)."""
        by_target = self.settings.key_shift_by_target
        named = match_singer(conv.target, by_target)
        shift = self.settings.key_shift if named is None else by_target[named]
        row = {c: math.nan for c in METRICS}
        row.update(output=str(conv.path), source=conv.source_name, target=conv.target, kind="",
                   language="", key_shift=math.nan if shift == "auto" else shift)
        notes: list[str] = []
        try:
            source = self.sources.lookup(conv.source_name)
            own = bool(source.singer and match_singer(conv.target, [source.singer]))
            row["kind"] = "self" if own else "cross"
            sr = self.settings.preprocess.sample_rate
            output = load_audio(conv.path, sr)
            self._f0_metrics(row, notes, output, source.path, shift)
            self._spectral(row, notes, conv, output, source.path, own)
            output_16k = load_audio(conv.path, EMBEDDING_RATE)
            self._speaker(row, notes, conv, output_16k, source.path)
            self._whisper_metrics(row, notes, conv, output_16k, source.path)
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

    def _recording_gv(self, path: Path, mel: np.ndarray | None = None) -> np.ndarray | None:
        """GV of a real recording (cached); ``mel``: its log-mel when already computed."""
        if path not in self._gv:
            pcfg = self.settings.preprocess
            try:
                self._gv[path] = global_variance(
                    log_mel(load_audio(path, pcfg.sample_rate), pcfg) if mel is None else mel)
            except ValueError as e:  # AudioError is a ValueError
                log.warning("%s: no log-mel GV: %s", path, e)
                self._gv[path] = None
        return self._gv[path]

    def _spectral(self, row: dict, notes: list, conv: Conversion, output: np.ndarray,
                  source_path: Path, own: bool) -> None:
        """mcd_db, mel_l1 and gv_db (module docstring)."""
        pcfg = self.settings.preprocess
        sr = pcfg.sample_rate
        try:
            out_mel = log_mel(output, pcfg)
            out_gv = global_variance(out_mel)
        except ValueError as e:
            notes.append(f"log-mel: {e}")
            return
        if own:
            real = load_audio(source_path, sr)
            row["mcd_db"] = mel_cepstral_distortion(output, real, sr, align=False)
            real_mel = log_mel(real, pcfg)
            row["mel_l1"] = mel_l1(out_mel, real_mel)
            real_gv = self._recording_gv(source_path, real_mel)
            if real_gv is not None:
                row["gv_db"] = gv_difference_db(out_gv, real_gv)
            return
        reference = self.same_content.get((conv.source_name, conv.target))
        if reference is None:
            notes.append("mcd: no same-content reference")
        else:
            row["mcd_db"] = mel_cepstral_distortion(output, load_audio(reference, sr), sr)
        name = match_singer(conv.target, self.references)
        refs = [] if name is None else [self._recording_gv(p) for p in self.references[name]
                                        if p.resolve() != source_path.resolve()]
        refs = [g for g in refs if g is not None]
        if refs:
            row["gv_db"] = gv_difference_db(out_gv, np.mean(refs, axis=0))
        else:
            notes.append("gv: no usable reference recordings for the target")

    def _embedding(self, key: object, load: Callable[[], np.ndarray]) -> np.ndarray | None:
        """Speaker embedding cached under ``key``; ``load`` gives the 16 kHz waveform."""
        if key not in self._embeddings:
            if self._encoder is None:
                self._encoder = SpeakerEncoder(self.settings.device)
            try:
                self._embeddings[key] = self._encoder.embed(load())
            except ValueError as e:  # AudioError is a ValueError
                log.warning("%s: no speaker embedding: %s", key, e)
                self._embeddings[key] = None
        return self._embeddings[key]

    def _file_embedding(self, path: Path) -> np.ndarray | None:
        return self._embedding(path, lambda: load_audio(path, EMBEDDING_RATE))

    def _speaker(self, row: dict, notes: list, conv: Conversion, output_16k: np.ndarray,
                 source_path: Path) -> None:
        out = self._embedding(conv.path, lambda: output_16k)
        if out is None:
            notes.append("speaker: output too short or silent for an embedding")
            return
        source = self._file_embedding(source_path)
        if source is not None:
            row["sim_source"] = cosine_similarity(out, source)
        name = match_singer(conv.target, self.references)
        if name is None:
            notes.append("speaker: no reference recordings for the target")
            return
        # A self-conversion's source is not also its own reference.
        refs = [self._file_embedding(p) for p in self.references[name]
                if p.resolve() != source_path.resolve()]
        refs = [e for e in refs if e is not None]
        if not refs:
            notes.append("speaker: no usable reference recordings for the target")
            return
        target = mean_embedding(refs)
        row["sim_target"] = cosine_similarity(out, target)
        shift = row["key_shift"]
        if math.isnan(shift):
            notes.append("control: key shift unknown")
            return
        control = self._embedding(("control", source_path, shift), lambda: key_shift_control(
            load_audio(source_path, EMBEDDING_RATE), shift))
        if control is not None:
            row["sim_control"] = cosine_similarity(control, target)
            row["sim_gain"] = row["sim_target"] - row["sim_control"]

    # -- CER ----------------------------------------------------------------------------------------
    def _whisper(self) -> WhisperTranscriber | None:
        if self._transcriber is None and self._whisper_error is None:
            try:
                self._transcriber = WhisperTranscriber(self.settings.whisper_path, self.settings.device)
            except (FileNotFoundError, ValueError) as e:
                self._whisper_error = str(e)
                log.warning("CER skipped: %s", e)
        return self._transcriber

    def _transcript(self, kind: str, source_path: Path, language: str,
                    load: Callable[[], np.ndarray]) -> str:
        if (kind, source_path) not in self._transcripts:
            self._transcripts[kind, source_path] = self._transcriber.transcribe(load(), language)
        return self._transcripts[kind, source_path]

    def _whisper_metrics(self, row: dict, notes: list, conv: Conversion, output_16k: np.ndarray,
                         source_path: Path) -> None:
        """content_distance and the cer columns of one output (16 kHz, (samples,)), where
        ``language`` is set and ``cer_sources`` selects the source."""
        settings = self.settings
        if settings.language is None:
            return
        if settings.cer_sources and not any(fnmatch.fnmatch(conv.source_name, g) or
                                            fnmatch.fnmatch(str(source_path), g)
                                            for g in settings.cer_sources):
            return
        transcriber = self._whisper()
        if transcriber is None:
            notes.append("cer, content_distance: no usable Whisper checkpoint")
            return
        source_16k = functools.cache(lambda: load_audio(source_path, WHISPER_RATE))
        if source_path not in self._content:
            self._content[source_path] = transcriber.encode(source_16k())
        row["content_distance"] = content_distance(transcriber.encode(output_16k),
                                                   self._content[source_path])
        self._cer(row, notes, output_16k, source_path, source_16k)

    def _cer(self, row: dict, notes: list, output_16k: np.ndarray, source_path: Path,
             source_16k: Callable[[], np.ndarray]) -> None:
        """The cer columns (module docstring); ``source_16k`` loads the source at 16 kHz."""
        settings = self.settings
        transcriber = self._transcriber
        if source_path not in self._languages:
            self._languages[source_path] = (transcriber.detect_language(source_16k())
                                            if settings.language == "auto" else settings.language)
        language = row["language"] = self._languages[source_path]
        if not transcriber.can_transcribe(language):
            notes.append(f"cer: {settings.whisper_path.name} is English-only, the source is {language!r}")
            return
        reference = self._transcript("source", source_path, language, source_16k)
        row["cer"] = character_error_rate(reference, transcriber.transcribe(output_16k, language), language)
        if math.isnan(row["cer"]):
            notes.append("cer: empty source transcript")
            return
        row["cer_capped"] = min(row["cer"], 1.0)
        if self.copy_synthesis is None:
            return
        copy = self._transcript("copy", source_path, language, lambda: self.copy_synthesis(source_path))
        row["cer_copy"] = character_error_rate(reference, copy, language)
        if row["cer_copy"] > 0:
            row["cer_rel"] = row["cer"] / row["cer_copy"]
        else:
            notes.append("cer_rel: the copy synthesis is transcribed exactly")


def mean_row(rows: list[dict], label: str = "MEAN") -> dict:
    """The mean row of ``rows``, named ``label``: each metric averaged over the rows where it is not
    NaN (NaN if none), except ``cer_median``: the median of ``cer`` over those rows, and
    ``cer_rel``: mean ``cer`` / mean ``cer_copy`` over the rows with both (the ratio of the means;
    rows whose copy synthesis is transcribed exactly count too). ``notes`` gives how many rows each
    covers."""
    mean = {c: "" for c in COLUMNS}
    mean["output"] = mean["source"] = label
    counts = []
    for metric in METRICS:
        values = [r[metric] for r in rows if not math.isnan(r[metric])]
        mean[metric] = float(np.mean(values)) if values else math.nan
        counts.append(f"{metric} n={len(values)}")
    cers = [r["cer"] for r in rows if not math.isnan(r["cer"])]
    mean["cer_median"] = float(np.median(cers)) if cers else math.nan
    counts[METRICS.index("cer_median")] = f"cer_median n={len(cers)}"
    both = [r for r in rows if not (math.isnan(r["cer"]) or math.isnan(r["cer_copy"]))]
    copy_cer = float(np.mean([r["cer_copy"] for r in both])) if both else math.nan
    mean["cer_rel"] = (float(np.mean([r["cer"] for r in both])) / copy_cer
                       if both and copy_cer > 0 else math.nan)
    counts[METRICS.index("cer_rel")] = f"cer_rel n={len(both)}"
    mean["notes"] = f"{len(rows)} outputs; " + ", ".join(counts)
    mean["key_shift"] = math.nan
    return mean


def control_summary(rows: list[dict]) -> str | None:
    """'beat the key-shift control: K of N outputs (mean gain G)' over the rows with ``sim_gain``
    (None when there is none); an output beats its control when ``sim_gain > 0``."""
    gains = [r["sim_gain"] for r in rows if not math.isnan(r["sim_gain"])]
    if not gains:
        return None
    wins = sum(g > 0 for g in gains)
    return (f"beat the key-shift control (closer to the target than the source merely key-shifted): "
            f"{wins} of {len(gains)} outputs, mean similarity gain {np.mean(gains):+.3f}")
