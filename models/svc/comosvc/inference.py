"""Stage 3 of DiffComoSVC: convert songs to a target singer with a trained experiment.

A source song goes through the training front end (processors/features.py: energy and F0 on the
mel frames; processors/content: the content features named in the checkpoint's config), its F0 is
key-shifted (processors/pitch_shift.py) and clamped into the model's range, the song is cut at quiet
points into chunks of at most ``inference.chunk_seconds`` (models/base/inference.py), each batch of
chunks goes through the acoustic model (teacher: EDM sampler, ``inference.comosvc.inference_steps``;
student: consistency sampling, ``inference.comosvc.student_inference_steps``), the normalised mels are
de-normalised with the target singer's dataset statistics (per-bin mel_min/mel_max), vocoded, and
the chunks are joined with a crossfade. Output audio has exactly the input's length, at the model's
sample rate.

Everything the model needs comes from the checkpoint itself (models/base/checkpoint.py): whether it
is a teacher or a student, its config, the singer table and the statistics. A user config (``--config``)
and ``--set`` overrides contribute only :data:`USER_KEYS`: the inference and vocoder sections and the
paths of the content models' local weights.

Memory: the per-frame features of the whole song are held (F0, energy and the content features,
which the extractors compute over 30 s windows; a 5-minute song at 24 kHz is about 28 k frames, 115 MB
of 1024-d Whisper medium features), while the acoustic model and the vocoder only ever see
``inference.batch_size`` chunks at a time. Features are computed afresh for every conversion (no
cache, so nothing can be stale).
"""
from __future__ import annotations

import copy
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from models.base.checkpoint import CheckpointError, conversion_checkpoint, load_checkpoint
from models.base.dataset import denormalize_mel
from models.base.inference import Chunk, CrossfadeJoiner, batched, plan_chunks, seconds_to_frames
from processors.mel import LOG_CLAMP
from processors.pitch_shift import autoshift_semitones, clamp_f0, shift_f0
from utils.audio import load_audio, save_wav
from utils.config import ConfigError, config_from_dict, config_to_dict, parse_override
from utils.schema import CantorConfig

log = logging.getLogger(__name__)

# Config keys a conversion may take from the user instead of the checkpoint: settings of the
# conversion itself and where this machine keeps the content models' weights.
USER_KEYS = (("inference",), ("vocoder",), ("preprocess", "whisper_path"),
             ("preprocess", "contentvec_path"), ("preprocess", "content_batch_size"))
# A chunk whose peak stays below -60 dBFS is silence: it is not converted and stays silent.
SILENCE_PEAK = 10.0 ** (-60.0 / 20.0)
AUTOSHIFT = "autoshift"


class UnknownSingerError(ValueError):
    """A target singer that is not in the experiment's singer table (the message lists them)."""


def _get(d: dict, path: tuple):
    for key in path:
        d = d[key]
    return d


def _set(d: dict, path: tuple, value) -> None:
    for key in path[:-1]:
        d = d.setdefault(key, {})
    d[path[-1]] = value


def _flatten(d: dict, prefix: tuple = ()) -> dict[tuple, object]:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flatten(v, prefix + (k,)))
        else:
            out[prefix + (k,)] = v
    return out


def _user_key(path: tuple) -> bool:
    return any(path[:len(k)] == k for k in USER_KEYS)


def conversion_config(checkpoint_config: dict, user_config: CantorConfig | None = None,
                      overrides: Sequence[str] = ()) -> CantorConfig:
    """The config a conversion runs with: the checkpoint's, with :data:`USER_KEYS` taken from
    ``user_config`` (when given) and then from ``overrides`` ("KEY.PATH=VALUE").

    Differences between ``user_config`` and the checkpoint in other model/preprocess keys, and
    overrides of keys outside USER_KEYS, are logged as warnings and not applied: the weights only
    fit the settings they were trained with. A content model path that differs from the
    checkpoint's is used, with a warning (it must name the same weights on this machine).
    Raises: ConfigError for a malformed override or an invalid result (e.g. a vocoder that does not
        match the checkpoint's preprocessing).
    """
    merged = copy.deepcopy(checkpoint_config)
    if user_config is not None:
        user = config_to_dict(user_config)
        for path in USER_KEYS:
            _set(merged, path, _get(user, path))
        ckpt, mine = _flatten(checkpoint_config), _flatten(user)
        for name in ckpt.get(("preprocess", "content_features"), []):
            path = ("preprocess", f"{name}_path")
            if path in ckpt and ckpt[path] != mine[path]:
                log.warning("%s: using %s from the config given; the model was trained on "
                            "features of %s, which must be the same weights", ".".join(path),
                            mine[path], ckpt[path])
        differ = [".".join(p) for p in ckpt if p[0] in ("model", "preprocess") and not _user_key(p)
                  and p[-1] not in ("distill", "teacher_model_path") and ckpt[p] != mine.get(p)]
        if differ:
            log.warning("the config given differs from the checkpoint's in %s; conversion uses the "
                        "checkpoint's settings (the weights were trained with them)",
                        ", ".join(differ))
    for text in overrides:
        for path, value in _flatten(parse_override(text)).items():
            if _user_key(path):
                _set(merged, path, value)
            else:
                log.warning("--set %s ignored: conversion takes %s from the checkpoint; only "
                            "inference.*, vocoder.* and the content weight paths can be set",
                            text, ".".join(path))
    return config_from_dict(merged, "conversion config (checkpoint + user settings)")


def auto_device() -> str:
    """"cuda" when a GPU is visible to torch, else "cpu"."""
    return "cuda" if torch.cuda.is_available() else "cpu"


@dataclass
class Timings:
    """Seconds spent per stage, and seconds of audio converted (for the real-time factor)."""

    features: float = 0.0
    acoustic: float = 0.0
    vocoder: float = 0.0
    audio: float = 0.0
    files: int = 0

    @property
    def total(self) -> float:
        return self.features + self.acoustic + self.vocoder

    def summary(self) -> str:
        """One line: audio converted, time taken, real-time factor overall and by stage."""
        rtf = (lambda s: s / self.audio) if self.audio > 0 else (lambda s: float("nan"))
        return (f"{self.audio:.1f} s of audio in {self.total:.1f} s: real-time factor "
                f"{rtf(self.total):.3f} (features {rtf(self.features):.3f}, acoustic model "
                f"{rtf(self.acoustic):.3f}, vocoder {rtf(self.vocoder):.3f})")


@dataclass
class Conversion:
    """One converted song: ``wav`` (samples,) float32 at ``sample_rate`` Hz, the same length as the
    source at that rate; ``key_shift`` the semitones applied to its F0."""

    wav: np.ndarray
    sample_rate: int
    key_shift: float
    chunks: list[Chunk] = field(default_factory=list)


class SVCConverter:
    """A loaded experiment, ready to convert songs.

    Args:
        checkpoint: a dict from :func:`models.base.checkpoint.load_checkpoint`.
        cfg: the conversion config (:func:`conversion_config`).
        device: torch device for the content models, the acoustic model and the vocoder.
        steps: sampler steps (teacher) or consistency steps (student); None: the config's.
    Raises: CheckpointError when the weights do not fit the checkpoint's config, ConfigError for
        fewer than 1 step or a CUDA device without a GPU, MissingWeightsError (content models) or FileNotFoundError (vocoder)
        for absent weights.

    Attributes: ``student`` (from the checkpoint), ``steps``, ``singers``, ``sample_rate``,
    ``timings`` (accumulated over every conversion).
    """

    def __init__(self, checkpoint: dict, cfg: CantorConfig, device: str | torch.device = "cpu",
                 steps: int | None = None):
        from models.svc.comosvc.model import ComoSVC
        from models.vocoders import load_vocoder
        from processors.content import check_content_dims, load_content_extractors

        self.cfg = cfg
        self.device = torch.device(device)
        if self.device.type == "cuda" and not torch.cuda.is_available():
            raise ConfigError(f"device {device!r}: torch sees no CUDA GPU here; use cpu")
        self.student = bool(checkpoint["student"])
        inf = cfg.inference.comosvc
        self.steps = steps if steps is not None else (
            inf.student_inference_steps if self.student else inf.inference_steps)
        if self.steps < 1:
            raise ConfigError(f"sampler steps must be at least 1, got {self.steps}")
        self.singers: dict[str, int] = dict(checkpoint["singers"])
        self.statistics: dict[str, dict] = checkpoint["statistics"]
        self.model = ComoSVC(cfg)
        try:
            self.model.load_state_dict(checkpoint["model"])
        except RuntimeError as e:
            raise CheckpointError(f"the checkpoint's weights do not fit its own config: {e}") from None
        self.model.to(self.device).eval()
        self.extractors = load_content_extractors(cfg.preprocess, self.device)
        check_content_dims(self.extractors, cfg.model.condition_encoder)
        self.vocoder = load_vocoder(cfg, self.device)
        self.sample_rate = cfg.preprocess.sample_rate
        self.timings = Timings()

    @classmethod
    def from_experiment(cls, path: str | Path, device: str | None = None,
                        user_config: CantorConfig | None = None, overrides: Sequence[str] = (),
                        steps: int | None = None) -> "SVCConverter":
        """Load the newest checkpoint of an experiment folder (its newest export for a distilled
        student), or a checkpoint file; ``device`` None picks :func:`auto_device`.

        Raises: models.base.checkpoint.CheckpointError (no or unreadable checkpoint), and as
            :func:`conversion_config` and the constructor.
        """
        file = conversion_checkpoint(path)
        checkpoint = load_checkpoint(file)
        cfg = conversion_config(checkpoint["config"], user_config, overrides)
        converter = cls(checkpoint, cfg, device or auto_device(), steps)
        log.info("loaded %s (%s, step %d): %d singers, %d %s steps on %s", file,
                 "consistency-distilled student" if converter.student else "diffusion teacher",
                 checkpoint["step"], len(converter.singers), converter.steps,
                 "consistency" if converter.student else cfg.inference.comosvc.sampler, converter.device)
        return converter

    # --- target singer -----------------------------------------------------------------------

    def check_target(self, singer: str) -> None:
        """Raise UnknownSingerError (listing the known singers) unless ``singer`` is a key of the
        singer table with statistics."""
        if singer not in self.singers:
            raise UnknownSingerError(f"unknown target singer {singer!r}; this experiment knows: "
                                     f"{', '.join(sorted(self.singers))}")
        self._singer_statistics(singer)

    def _singer_statistics(self, singer: str) -> tuple[dict, dict]:
        """(the dataset statistics holding ``singer``, that singer's F0 statistics)."""
        for stats in self.statistics.values():
            if singer in stats.get("singers", {}):
                return stats, stats["singers"][singer]
        known = sorted(s for stats in self.statistics.values() for s in stats.get("singers", {}))
        raise UnknownSingerError(f"target singer {singer!r} has no statistics in the checkpoint "
                                 f"(no voiced frame in its data?); singers with statistics: "
                                 f"{', '.join(known)}")

    # --- conversion --------------------------------------------------------------------------

    def _sync(self) -> float:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        return time.perf_counter()

    def key_shift_for(self, f0: np.ndarray, singer: str, key_shift: float | str) -> float:
        """Semitones to apply: ``key_shift`` itself, or for "autoshift" the interval from the
        source's voiced median F0 to the target singer's median (f0_median of statistics.json),
        rounded to whole semitones when ``inference.autoshift_round``."""
        if key_shift != AUTOSHIFT:
            return float(key_shift)
        _, singer_stats = self._singer_statistics(singer)
        return autoshift_semitones(f0, singer_stats["f0_median"], self.cfg.inference.autoshift_round)

    def convert(self, wav: np.ndarray, singer: str, key_shift: float | str = 0.0,
                name: str = "source") -> Conversion:
        """Convert one song.

        Args:
            wav: (samples,) float32 mono at ``sample_rate`` Hz, at least one hop long.
            singer: target, a key of the singer table.
            key_shift: semitones (negative lowers) or "autoshift".
            name: used in log messages and the progress bar.
        Returns: :class:`Conversion`, its wav of the same length as ``wav``.
        Raises: UnknownSingerError; ValueError for a signal shorter than one hop; the pitch
            tracker's F0Error.
        """
        from processors.content import CONTENT_SAMPLE_RATE
        from processors.features import acoustic_features
        import soxr

        self.check_target(singer)
        pcfg, hop = self.cfg.preprocess, self.cfg.preprocess.hop_size
        t0 = self._sync()
        feats = acoustic_features(wav, pcfg)
        shift = self.key_shift_for(feats["f0"], singer, key_shift)
        f0 = clamp_f0(shift_f0(feats["f0"], shift), pcfg.f0_min, pcfg.f0_max, f"{name} F0")
        chunks = plan_chunks(feats["energy"],
                             seconds_to_frames(self.cfg.inference.chunk_seconds, self.sample_rate, hop),
                             seconds_to_frames(self.cfg.inference.chunk_overlap, self.sample_rate, hop))
        audible = [i for i, c in enumerate(chunks)
                   if np.abs(wav[c.start * hop:c.end * hop]).max(initial=0.0) >= SILENCE_PEAK]
        if len(audible) < len(chunks):
            log.info("%s: %d of %d chunks are silent (peak below -60 dBFS) and stay silent", name,
                     len(chunks) - len(audible), len(chunks))
        content = {}
        if audible and self.extractors:
            wav16 = soxr.resample(wav, self.sample_rate, CONTENT_SAMPLE_RATE, quality="HQ")
            content = {n: ex.extract([wav16], [len(f0)])[0] for n, ex in self.extractors.items()}
        self.timings.features += self._sync() - t0

        joiner = CrossfadeJoiner(chunks, hop)
        stats, _ = self._singer_statistics(singer)
        mel_min = torch.tensor(stats["mel_min"], dtype=torch.float32, device=self.device)
        mel_max = torch.tensor(stats["mel_max"], dtype=torch.float32, device=self.device)
        generator = torch.Generator(device=self.device).manual_seed(self.cfg.train.seed)
        groups = [[audible[i] for i in g] for g in batched(audible, self.cfg.inference.batch_size)]
        for group in tqdm(groups, desc=name, unit="batch", leave=False, disable=len(groups) < 2):
            t1 = self._sync()
            batch = self._batch([chunks[i] for i in group], f0, feats["energy"], content,
                                self.singers[singer])
            mel = self.model.sample(batch, steps=self.steps, student=self.student,
                                    generator=generator)["mel"]
            mel = denormalize_mel(mel.float(), mel_min, mel_max)
            mel = torch.where(batch["mask"][:, None, :], mel, torch.full_like(mel, np.log(LOG_CLAMP)))
            t2 = self._sync()
            audio = self.vocoder(mel).float().cpu().numpy()
            t3 = self._sync()
            for row, i in enumerate(group):
                joiner.add(i, audio[row, :chunks[i].n_frames * hop])
            self.timings.acoustic += t2 - t1
            self.timings.vocoder += t3 - t2
        out = np.zeros(len(wav), dtype=np.float32)
        out[:len(joiner.output)] = joiner.output
        self.timings.audio += len(wav) / self.sample_rate
        self.timings.files += 1
        return Conversion(out, self.sample_rate, shift, chunks)

    def _batch(self, chunks: list[Chunk], f0: np.ndarray, energy: np.ndarray,
               content: dict[str, np.ndarray], singer_id: int) -> dict[str, torch.Tensor]:
        """Zero-padded model batch of ``chunks`` of the song's (T,) f0 and energy and (T, D)
        content features (layout: models/svc/comosvc/model.py)."""
        lengths = [c.n_frames for c in chunks]
        b, t = len(chunks), max(lengths)
        batch = {"f0": torch.zeros(b, t), "energy": torch.zeros(b, t),
                 "mask": torch.zeros(b, t, dtype=torch.bool),
                 "singer": torch.full((b,), singer_id, dtype=torch.long)}
        for name, feats in content.items():
            batch[name] = torch.zeros(b, t, feats.shape[1])
        for row, c in enumerate(chunks):
            n = c.n_frames
            batch["f0"][row, :n] = torch.from_numpy(f0[c.start:c.end])
            batch["energy"][row, :n] = torch.from_numpy(energy[c.start:c.end])
            batch["mask"][row, :n] = True
            for name, feats in content.items():
                batch[name][row, :n] = torch.from_numpy(feats[c.start:c.end])
        batch["uv"] = (batch["f0"] <= 0) & batch["mask"]
        return {k: v.to(self.device) for k, v in batch.items()}

    def convert_file(self, path: str | Path, singer: str, key_shift: float | str = 0.0,
                     name: str | None = None) -> Conversion:
        """:meth:`convert` of an audio file (any format utils.audio reads, resampled to the model's
        rate). Raises: utils.audio.AudioError naming an unreadable file, and as :meth:`convert`."""
        t0 = self._sync()
        wav = load_audio(path, self.sample_rate)
        self.timings.features += self._sync() - t0
        return self.convert(wav, singer, key_shift, name or Path(path).stem)


def output_path(output_dir: str | Path, source_name: str, singer: str) -> Path:
    """Amphion's layout: ``<output_dir>/<source name>/<source name>_<target singer>.wav``."""
    return Path(output_dir) / source_name / f"{source_name}_{singer}.wav"


def convert_sources(converter: SVCConverter, sources: Sequence[tuple[str, Path]], singer: str,
                    key_shift: float | str, output_dir: str | Path) -> list[tuple[Path, str]]:
    """Convert every (source name, audio path) to ``singer`` into :func:`output_path` (16-bit),
    with a progress bar and a closing line giving the real-time factor.

    A source that fails (unreadable, too short, ...) is logged with its path and skipped; the
    others still convert.
    Returns: [(path, error message)] of the failed sources.
    Raises: UnknownSingerError before anything is converted.
    """
    converter.check_target(singer)
    failed: list[tuple[Path, str]] = []
    for name, path in tqdm(sources, desc=f"converting to {singer}", unit="file"):
        try:
            result = converter.convert_file(path, singer, key_shift, name)
        except Exception as e:  # one bad file must not stop the others
            msg = str(e) if str(path) in str(e) else f"{path}: {type(e).__name__}: {e}"
            log.error("skipped %s", msg)
            failed.append((Path(path), msg))
            continue
        out = output_path(output_dir, name, singer)
        save_wav(out, result.wav, result.sample_rate)
        log.info("%s -> %s (key shift %+.2f semitones)", path, out, result.key_shift)
    t = converter.timings
    tqdm.write(f"converted {t.files} of {len(sources)} files to {singer} "
               f"({'student' if converter.student else 'teacher'}, {converter.steps} steps, "
               f"{converter.device}): {t.summary()}")
    return failed
