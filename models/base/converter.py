"""Model-agnostic stage 3: convert songs to a target singer with a trained experiment.

A source song goes through the training front end (processors/features.py: energy and F0 on the
mel frames; processors/content: the content features named in the checkpoint's config), its F0 is
key-shifted (processors/pitch_shift.py) and clamped into the model's range, the song is cut at quiet
points into chunks of at most ``inference.chunk_seconds`` (models/base/chunking.py), each batch of
chunks becomes audio through the model's :meth:`SVCConverter.synthesize` (DiffComoSVC:
models/svc/comosvc/inference.py), and the chunks are joined with a crossfade. Output audio has
exactly the input's length, at the model's sample rate.

Everything the model needs comes from the checkpoint itself (models/base/checkpoint.py): its
config, the singer table and the statistics (models/base/conversion_config.py says what a user may
set).

Memory: the per-frame features of the whole song are held (F0, energy and the content features,
which the extractors compute over 30 s windows; a 5-minute song at 24 kHz is about 28 k frames, 115 MB
of 1024-d Whisper medium features), while the acoustic model and the vocoder only ever see
``inference.batch_size`` chunks at a time. Every batch is padded to the longest one so far, rounded
up to :data:`SHAPE_STEP_FRAMES`, so that they see one or two input shapes per song: the runtimes
keep memory per shape they have run (OpenVINO's CPU plugin about 160 MB per new shape of a 4 x 10 s
HiFi-GAN batch, measured; torch's oneDNN less), which made a song's peak grow with its length
(bins/bench/bench_memory.py). Features are computed afresh for every conversion (no cache, so
nothing can be stale).
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from models.base.checkpoint import CheckpointError, conversion_checkpoint, load_checkpoint
from models.base.chunking import Chunk, CrossfadeJoiner, batched, plan_chunks, seconds_to_frames
from models.base.conversion_config import conversion_config
from models.base.retrieval import RetrievalIndex, blend, index_folder
from models.base.singer_mix import SingerMix, SingerMixError, mix_f0_median, parse_singer_mix
from modules.singer_embedding import MIX_KEY
from processors.pitch_shift import autoshift_semitones, clamp_f0, shift_f0
from utils.audio import load_audio
from utils.config import ConfigError
from utils.schema import CantorConfig

log = logging.getLogger(__name__)

# A chunk whose peak stays below -60 dBFS is silence: it is not converted and stays silent.
SILENCE_PEAK = 10.0 ** (-60.0 / 20.0)
AUTOSHIFT = "autoshift"


class UnknownSingerError(ValueError):
    """A target singer that is not in the experiment's singer table (the message lists them)."""


class NonFiniteAudioError(ValueError):
    """The model turned a song into NaN/inf samples (the message names the song and the checkpoint);
    nothing is written for it."""


class BrokenModelError(ValueError):
    """The first batch the model synthesized is mostly full-scale noise: its weights are broken
    (the message names the checkpoint). Every song would fail alike, so a batch stops here."""


# A first synthesized batch whose samples are at full scale (|x| >= FULL_SCALE) for more than
# MAX_FULL_SCALE_SHARE of its length comes from broken weights; singing, even clipped, has a few %.
FULL_SCALE = 0.99
MAX_FULL_SCALE_SHARE = 0.5
# Batch lengths are rounded up to a multiple of this many frames (module doc, "Memory").
SHAPE_STEP_FRAMES = 64


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
    """A loaded experiment, ready to convert songs: the model-agnostic pipeline (features, key
    shift, chunking, batching, crossfade). A model's subclass builds its networks in ``__init__``
    and turns a batch into audio in :meth:`synthesize`.

    Args:
        checkpoint: a dict from :func:`models.base.checkpoint.load_checkpoint`.
        cfg: the conversion config (:func:`models.base.conversion_config.conversion_config`).
        device: torch device for the content models, the acoustic model and the vocoder.
    Raises: ConfigError for a CUDA device without a GPU, MissingWeightsError (content models) for
        absent weights.

    Attributes: ``singers``, ``statistics``, ``sample_rate``, ``timings`` (accumulated over every
    conversion), ``checkpoint_path`` (the file loaded by :meth:`from_experiment`, else None),
    ``retrieval`` (the experiment's feature-retrieval index when ``inference.index_rate`` > 0 and
    loaded by :meth:`from_checkpoint`, else None: models/base/retrieval.py).

    A target ``singer`` is everywhere a singer name or a mix "A:0.7,B:0.3"
    (models/base/singer_mix.py).
    """

    def __init__(self, checkpoint: dict, cfg: CantorConfig, device: str | torch.device = "cpu"):
        from processors.content import check_content_dims, load_content_extractors

        self.cfg = cfg
        self.device = torch.device(device)
        if self.device.type == "cuda" and not torch.cuda.is_available():
            raise ConfigError(f"device {device!r}: torch sees no CUDA GPU here; use cpu")
        self.singers: dict[str, int] = dict(checkpoint["singers"])
        self.statistics: dict[str, dict] = checkpoint["statistics"]
        self.extractors = load_content_extractors(cfg.preprocess, self.device)
        check_content_dims(self.extractors, cfg.model.condition_encoder)
        self.sample_rate = cfg.preprocess.sample_rate
        self.timings = Timings()
        self.checkpoint_path: Path | None = None
        self.retrieval: RetrievalIndex | None = None

    #: The config's model_type this class converts with (set by each model's subclass).
    model_type = ""

    # --- the model's part --------------------------------------------------------------------

    def synthesize(self, batch: dict[str, torch.Tensor], singer: str,
                   generator: torch.Generator, tail_frames: int | None = None) -> np.ndarray:
        """Audio of a model batch (layout: :meth:`_batch`), (B, frames * hop_size) float32 at
        ``sample_rate``; adds its time to ``timings.acoustic`` / ``timings.vocoder``.

        With ``tail_frames`` (the realtime path, models/base/streaming.py) the acoustic model still
        sees every frame but only the audio of the last ``tail_frames`` frames is generated:
        (B, tail_frames * hop_size)."""
        raise NotImplementedError

    def describe(self) -> str:
        """What was loaded, for the log (e.g. "diffusion teacher, 40 euler steps")."""
        raise NotImplementedError

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
        return cls.from_checkpoint(file, checkpoint, device, user_config, overrides, steps)

    @classmethod
    def from_checkpoint(cls, file: Path, checkpoint: dict, device: str | None = None,
                        user_config: CantorConfig | None = None, overrides: Sequence[str] = (),
                        steps: int | None = None) -> "SVCConverter":
        """:meth:`from_experiment` of an already loaded ``checkpoint`` (read from ``file``).

        With ``inference.index_rate`` > 0 the experiment's feature-retrieval index is loaded and
        checked against the checkpoint's own config and singer table.
        Raises: CheckpointError when the checkpoint's model_type is not this class's;
            RetrievalIndexError for a missing, stale, foreign or corrupted index; and as
            :func:`conversion_config` and the constructor.
        """
        found = checkpoint["config"].get("model_type", "DiffComoSVC")
        if found != cls.model_type:
            raise CheckpointError(f"{file} holds a {found} model, not {cls.model_type}; load it "
                                  f"with models.svc.registry.load_converter")
        cfg = conversion_config(checkpoint["config"], user_config, overrides)
        converter = cls(checkpoint, cfg, device or auto_device(), **({} if steps is None else
                                                                     {"steps": steps}))
        converter.checkpoint_path = file
        if cfg.inference.index_rate > 0:
            from processors.content.stage import content_settings
            from utils.config import config_from_dict
            converter.retrieval = RetrievalIndex.load(
                index_folder(file), content_settings(config_from_dict(checkpoint["config"])),
                checkpoint["singers"])
        log.info("loaded %s (%s, step %d): %d singers, on %s", file, converter.describe(),
                 checkpoint["step"], len(converter.singers), converter.device)
        return converter

    # --- target singer -----------------------------------------------------------------------

    def target(self, singer: str) -> SingerMix:
        """The parsed target (a name or a mix, models/base/singer_mix.py). Raises
        UnknownSingerError listing the unknown and the known singers, or naming a bad weight."""
        try:
            return parse_singer_mix(singer, self.singers)
        except SingerMixError as e:
            raise UnknownSingerError(str(e)) from None

    def check_target(self, singer: str) -> None:
        """Raise UnknownSingerError (listing the known singers) unless every singer of the target
        ``singer`` is a key of the singer table with statistics and, with a retrieval index, has
        an index."""
        for name in self.target(singer).names:
            self.singer_statistics(name)
            if self.retrieval is not None and name not in self.retrieval.singers:
                raise UnknownSingerError(f"{self.retrieval.folder}: no feature-retrieval index of "
                                         f"{name!r} (not in this experiment's training data); "
                                         f"convert with index_rate 0")

    def singer_statistics(self, singer: str) -> tuple[dict, dict]:
        """(the dataset statistics holding ``singer``, that singer's F0 statistics); for a mix,
        those of its primary (heaviest) singer."""
        if singer not in self.singers:
            singer = self.target(singer).primary
        for stats in self.statistics.values():
            if singer in stats.get("singers", {}):
                return stats, stats["singers"][singer]
        known = sorted(s for stats in self.statistics.values() for s in stats.get("singers", {}))
        raise UnknownSingerError(f"target singer {singer!r} has no statistics in the checkpoint "
                                 f"(no voiced frame in its data?); singers with statistics: "
                                 f"{', '.join(known)}")

    # --- conversion --------------------------------------------------------------------------

    def sync(self) -> float:
        """time.perf_counter() after the device's queued work (CUDA) is done."""
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        return time.perf_counter()

    def key_shift_for(self, f0: np.ndarray, singer: str, key_shift: float | str) -> float:
        """Semitones to apply: ``key_shift`` itself, or for "autoshift" the interval from the
        source's voiced median F0 to the target singer's median (f0_median of statistics.json; a
        mix's: :func:`models.base.singer_mix.mix_f0_median`), rounded to whole semitones when
        ``inference.autoshift_round``."""
        if key_shift != AUTOSHIFT:
            return float(key_shift)
        mix, medians = self.target(singer), {}
        for name in mix.names:
            _, singer_stats = self.singer_statistics(name)
            if "f0_median" not in singer_stats:
                raise UnknownSingerError(f"autoshift needs the F0 statistics of {name!r}, which "
                                         f"this model does not have (an imported one?); give "
                                         f"semitones")
            medians[name] = singer_stats["f0_median"]
        return autoshift_semitones(f0, mix_f0_median(mix, medians), self.cfg.inference.autoshift_round)

    def convert(self, wav: np.ndarray, singer: str, key_shift: float | str = 0.0,
                name: str = "source") -> Conversion:
        """Convert one song.

        Args:
            wav: (samples,) float32 mono at ``sample_rate`` Hz, at least one hop long.
            singer: target, a key of the singer table.
            key_shift: semitones (negative lowers) or "autoshift".
            name: used in log messages and the progress bar.
        Returns: :class:`Conversion`, its wav of the same length as ``wav``.
        Raises: UnknownSingerError; ValueError for a signal shorter than one hop or a key shift
            beyond processors.pitch_shift.MAX_KEY_SHIFT; the pitch tracker's F0Error;
            NonFiniteAudioError when the model's output holds NaN or inf; BrokenModelError when
            its first batch is mostly at full scale.
        """
        from processors.features import acoustic_features

        self.check_target(singer)
        pcfg, hop = self.cfg.preprocess, self.cfg.preprocess.hop_size
        t0 = self.sync()
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
        content = self.content_features(wav, len(f0)) if audible else {}
        if self.retrieval is not None and content:
            content = self.blend_retrieved(content, self.retrieved(content, singer), f0 <= 0)
        self.timings.features += self.sync() - t0

        joiner = CrossfadeJoiner(chunks, hop)
        generator = torch.Generator(device=self.device).manual_seed(self.cfg.train.seed)
        groups = [[audible[i] for i in g] for g in batched(audible, self.cfg.inference.batch_size)]
        frames = 0  # every batch padded to the longest so far (module doc, "Memory")
        for group in tqdm(groups, desc=name, unit="batch", leave=False, disable=len(groups) < 2):
            longest = max(chunks[i].n_frames for i in group)
            frames = max(frames, -(-longest // SHAPE_STEP_FRAMES) * SHAPE_STEP_FRAMES)
            batch = self._batch([chunks[i] for i in group], f0, feats["energy"], content, singer,
                                frames)
            audio = self.synthesize(batch, singer, generator)
            if group is groups[0]:
                self._check_not_saturated(audio, [chunks[i].n_frames * hop for i in group], name)
            for row, i in enumerate(group):
                joiner.add(i, audio[row, :chunks[i].n_frames * hop])
        out = np.zeros(len(wav), dtype=np.float32)
        out[:len(joiner.output)] = joiner.output
        if not np.all(np.isfinite(out)):
            raise NonFiniteAudioError(
                f"the model produced NaN/inf audio for {name} ({np.count_nonzero(~np.isfinite(out))} "
                f"of {out.size} samples) with {self.checkpoint_path or 'the loaded checkpoint'}; "
                f"nothing written")
        self.timings.audio += len(wav) / self.sample_rate
        self.timings.files += 1
        return Conversion(out, self.sample_rate, shift, chunks)

    def content_features(self, wav: np.ndarray, n_frames: int) -> dict[str, np.ndarray]:
        """The content features conversion feeds the model: ``wav`` ((samples,) float32 at
        ``sample_rate`` Hz) resampled to 16 kHz (soxr HQ) and encoded by every extractor, aligned
        to ``n_frames`` mel frames: {name: float32 (n_frames, dim)}; {} without extractors.
        (Stage 1 decodes the file at 16 kHz directly; bins/bench/feature_parity.py measures the
        difference.)"""
        from processors.content import CONTENT_SAMPLE_RATE
        import soxr

        if not self.extractors:
            return {}
        wav16 = soxr.resample(wav, self.sample_rate, CONTENT_SAMPLE_RATE, quality="HQ")
        return {n: ex.extract([wav16], [n_frames])[0] for n, ex in self.extractors.items()}

    def retrieved(self, content: dict[str, np.ndarray], singer: str) -> dict[str, np.ndarray]:
        """The retrieval index's neighbour average (models/base/retrieval.py) of every content
        feature ((T, D) float32) in the target ``singer``'s index, a mix's weighted by the mix:
        {name: (T, D) float32}. Needs :attr:`retrieval`."""
        mix, k = self.target(singer), self.cfg.inference.index_k
        return {name: sum(w * self.retrieval.retrieve(s, name, feats, k)
                          for s, w in zip(mix.names, mix.weights))
                for name, feats in content.items()}

    def blend_retrieved(self, content: dict[str, np.ndarray], retrieved: dict[str, np.ndarray],
                        unvoiced: np.ndarray) -> dict[str, np.ndarray]:
        """:func:`models.base.retrieval.blend` of each (T, D) content feature with its retrieved
        one, by ``inference.index_rate`` and ``inference.protect``; ``unvoiced`` (T,) bool."""
        inf = self.cfg.inference
        return {name: blend(feats, retrieved[name], unvoiced, inf.index_rate, inf.protect)
                for name, feats in content.items()}

    def _check_not_saturated(self, audio: np.ndarray, lengths: list[int], name: str) -> None:
        """Raise BrokenModelError when the (B, samples) ``audio`` of a batch, its first
        ``lengths[b]`` samples per row, is at full scale for more than MAX_FULL_SCALE_SHARE."""
        valid = np.concatenate([audio[row, :n] for row, n in enumerate(lengths)])
        share = np.count_nonzero(np.abs(valid) >= FULL_SCALE) / max(valid.size, 1)
        if share > MAX_FULL_SCALE_SHARE:
            raise BrokenModelError(
                f"{self.checkpoint_path or 'the loaded checkpoint'}: broken weights, the first "
                f"chunk synthesized for {name} is {share:.0%} full-scale samples (|x| >= "
                f"{FULL_SCALE}); conversion stopped, nothing written")

    def _batch(self, chunks: list[Chunk], f0: np.ndarray, energy: np.ndarray,
               content: dict[str, np.ndarray], singer: str,
               frames: int = 0) -> dict[str, torch.Tensor]:
        """Zero-padded model batch of ``chunks`` of the song's (T,) f0 and energy and (T, D)
        content features, T the longest chunk's frames or ``frames`` if more: "f0" (B, T) Hz, "energy" (B, T), "mask" (B, T) bool, "singer" (B,) long
        (the target's id; a mix's primary singer), for a mix of several singers "singer_weights"
        (B, singer_table_size) float (modules/singer_embedding.py), "uv" (B, T) bool and one
        (B, T, D) tensor per content feature, on ``device``."""
        lengths = [c.n_frames for c in chunks]
        b, t = len(chunks), max(*lengths, frames)
        mix = self.target(singer)
        batch = {"f0": torch.zeros(b, t), "energy": torch.zeros(b, t),
                 "mask": torch.zeros(b, t, dtype=torch.bool),
                 "singer": torch.full((b,), self.singers[mix.primary], dtype=torch.long)}
        if not mix.single:
            table = mix.table_weights(self.singers, self.cfg.model.condition_encoder.singer_table_size)
            batch[MIX_KEY] = table.expand(b, -1).contiguous()
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
        t0 = self.sync()
        wav = load_audio(path, self.sample_rate)
        self.timings.features += self.sync() - t0
        return self.convert(wav, singer, key_shift, name or Path(path).stem)
