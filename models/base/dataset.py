"""Training data of stage 2: the stage 1 features of every dataset in ``cfg.dataset``, as random crops
of min-max normalised mels with their aligned per-frame features, batched by length.

Reads, under ``cfg.preprocess.processed_dir`` (layout: the stage 1 contract):
``singers.json`` (one global singer table), ``<dataset>/{train,test}.json``,
``<dataset>/statistics.json`` (per-bin ``mel_min``/``mel_max``, ``log_energy_min/max``) and per
utterance ``<dataset>/{mels,pitches,uvs,energys,<content feature>}/<Uid>.npy``.

One example (:meth:`SVCDataset.__getitem__`, numpy, ``t`` <= ``cfg.train.max_frames`` frames):
``mel`` (n_mel, t) normalised to [-1, 1]; ``f0`` (t,) Hz, 0 where unvoiced; ``uv`` (t,) bool, True =
unvoiced; ``energy`` (t,); ``singer`` int (global id); one (t, D) array per content feature; with
``preprocess.extract_audio``, ``audio`` (t * hop_size,) float32, the waveform of the same frames
(``<dataset>/audios/<Uid>.npy``); with ``train.content_loss.weight`` > 0, ``mel_min`` and
``mel_max`` (n_mel,), the dataset's normalisation range (for the content-consistency loss).
:func:`collate` pads a list of them with zeros into the model
batch: ``mel`` (B, n_mel, T), ``f0``, ``energy`` (B, T) float, ``uv`` and ``mask`` (B, T) bool (mask
True = real frame), ``singer`` (B,) long, content (B, T, D), ``audio`` (B, T * hop_size),
``mel_min`` / ``mel_max`` (B, n_mel).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

from utils.paths import resolve_path
from utils.io import load_json
from utils.schema import CantorConfig

# Per-frame arrays besides the mel: batch key -> stage 1 folder name.
FRAME_FEATURES = {"f0": "pitches", "uv": "uvs", "energy": "energys"}
# Bins whose mel_max - mel_min is below this are treated as constant (no division by ~0).
MEL_RANGE_EPS = 1e-5


class DataError(ValueError):
    """Stage 1 output that stage 2 cannot use; the message names the file and what is wrong."""


def _read_json(path: Path, what: str):
    if not path.is_file():
        raise DataError(f"{what} not found: {path} (run stage 1 preprocessing for this config first)")
    try:
        return load_json(path)
    except ValueError as e:
        raise DataError(f"{path}: not valid JSON: {e}") from None


def load_singers(cfg: CantorConfig) -> dict[str, int]:
    """The global singer table ``processed_dir/singers.json``: {"<dataset>_<singer>": id}.

    Raises:
        DataError: the file is missing or malformed, or an id does not fit
            ``model.condition_encoder.singer_table_size``.
    """
    path = resolve_path(cfg.preprocess.processed_dir) / "singers.json"
    singers = _read_json(path, "singer table")
    if not isinstance(singers, dict) or not all(isinstance(v, int) for v in singers.values()):
        raise DataError(f"{path}: expected an object of singer name -> integer id")
    size = cfg.model.condition_encoder.singer_table_size
    too_big = {k: v for k, v in singers.items() if not 0 <= v < size}
    if too_big:
        raise DataError(f"{path}: singer ids {too_big} do not fit model.condition_encoder."
                        f"singer_table_size = {size}; raise it above the largest id")
    return singers


def load_statistics(cfg: CantorConfig) -> dict[str, dict]:
    """``{dataset: statistics.json}`` for every dataset in ``cfg.dataset``.

    Raises:
        DataError: a file is missing, or its mel_min/mel_max do not have n_mel entries.
    """
    root = resolve_path(cfg.preprocess.processed_dir)
    stats = {}
    for name in cfg.dataset:
        path = root / name / "statistics.json"
        s = _read_json(path, "dataset statistics")
        for key in ("mel_min", "mel_max"):
            if len(s.get(key, [])) != cfg.preprocess.n_mel:
                raise DataError(f"{path}: {key} must have preprocess.n_mel = {cfg.preprocess.n_mel} "
                                f"values, found {len(s.get(key, []))}")
        for key in ("log_energy_min", "log_energy_max"):
            if not isinstance(s.get(key), (int, float)):
                raise DataError(f"{path}: {key} missing or not a number")
        stats[name] = s
    return stats


def energy_range(statistics: dict[str, dict]) -> tuple[float, float]:
    """(lowest log_energy_min, highest log_energy_max) over the datasets: the range the condition
    encoder's energy buckets span (``set_energy_range``)."""
    return (min(s["log_energy_min"] for s in statistics.values()),
            max(s["log_energy_max"] for s in statistics.values()))


def normalize_mel(mel: np.ndarray, mel_min: np.ndarray, mel_max: np.ndarray) -> np.ndarray:
    """Per-bin min-max normalisation of a log-mel (n_mel, T) to [-1, 1]:
    ``2 (mel - min) / (max - min) - 1``, the range divided being at least MEL_RANGE_EPS."""
    lo, hi = mel_min[:, None], mel_max[:, None]
    return (2.0 * (mel - lo) / np.maximum(hi - lo, MEL_RANGE_EPS) - 1.0).astype(np.float32)


def denormalize_mel(mel: torch.Tensor, mel_min: torch.Tensor, mel_max: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`normalize_mel` for (n_mel, T) or (B, n_mel, T) tensors; min/max (n_mel,)."""
    lo, hi = mel_min[:, None], mel_max[:, None]
    return (mel + 1.0) / 2.0 * torch.clamp(hi - lo, min=MEL_RANGE_EPS) + lo


class SVCDataset(Dataset):
    """The ``split`` ("train" or "test") utterances of every dataset in ``cfg.dataset``.

    Training examples are random crops of at most ``cfg.train.max_frames`` frames, the same window
    for every feature; the crop start depends only on (train.seed, epoch, index), so data order and
    crops are reproducible and a resumed run sees what an uninterrupted one would. With
    ``random_crop=False`` (validation) the crop is the centre window.

    Raises:
        DataError: a missing/malformed split, statistics or singer table; an entry whose singer is
            not in singers.json; a content feature with no ``<name>_dim`` in
            ``model.condition_encoder``; an npy file that is missing, has the wrong feature size
            or a frame count different from its mel's (checked for the first utterance of each
            dataset at construction, and for each file as it is read).
    """

    def __init__(self, cfg: CantorConfig, split: str, random_crop: bool, singers: dict[str, int],
                 statistics: dict[str, dict]):
        self.cfg = cfg
        self.random_crop = random_crop
        self.max_frames = cfg.train.max_frames
        self.seed = cfg.train.seed
        self.epoch = 0
        self.root = resolve_path(cfg.preprocess.processed_dir)
        enc = cfg.model.condition_encoder
        self.content_dims = {}
        for name in cfg.preprocess.content_features:
            if not hasattr(enc, f"{name}_dim"):
                raise DataError(f"preprocess.content_features names {name!r}, but model.condition_"
                                f"encoder has no {name}_dim; known: whisper, contentvec")
            self.content_dims[name] = getattr(enc, f"{name}_dim")
        self.mel_range = {name: (np.asarray(s["mel_min"], np.float32), np.asarray(s["mel_max"], np.float32))
                          for name, s in statistics.items()}
        self.entries: list[dict] = []
        for name in cfg.dataset:
            path = self.root / name / f"{split}.json"
            entries = _read_json(path, f"{split} split")
            if not isinstance(entries, list):
                raise DataError(f"{path}: expected a list of utterances")
            for e in entries:
                key = f"{e['Dataset']}_{e['Singer']}"
                if key not in singers:
                    raise DataError(f"{path}: utterance {e['Uid']} has singer {key!r}, which is not "
                                    f"in {self.root / 'singers.json'}")
                self.entries.append({**e, "singer_id": singers[key]})
        hop, sr = cfg.preprocess.hop_size, cfg.preprocess.sample_rate
        self.lengths = [min(int(e["Duration"] * sr) // hop, self.max_frames) for e in self.entries]
        first = {}
        for i, e in enumerate(self.entries):
            first.setdefault(e["Dataset"], i)
        for i in first.values():
            self._load(i, 0, None)

    def __len__(self) -> int:
        return len(self.entries)

    def set_epoch(self, epoch: int) -> None:
        """Choose the epoch whose random crops the next reads use."""
        self.epoch = epoch

    def _file(self, entry: dict, folder: str) -> Path:
        return self.root / entry["Dataset"] / folder / f"{entry['Uid']}.npy"

    def _open(self, entry: dict, folder: str) -> np.ndarray:
        path = self._file(entry, folder)
        try:
            return np.load(path, mmap_mode="r")
        except FileNotFoundError:
            raise DataError(f"feature file missing: {path} (rerun stage 1)") from None
        except ValueError as e:
            raise DataError(f"{path}: unreadable npy: {e}") from None

    def _load(self, index: int, start: int | None, length: int | None) -> dict:
        """Read frames [start, start + length) of every feature of utterance ``index``; ``start``
        None means "choose the crop", length None means the whole utterance."""
        e = self.entries[index]
        mel = self._open(e, "mels")
        n_mel = self.cfg.preprocess.n_mel
        if mel.ndim != 2 or mel.shape[0] != n_mel:
            raise DataError(f"{self._file(e, 'mels')}: mel of shape {mel.shape}, expected "
                            f"(preprocess.n_mel = {n_mel}, T)")
        n = mel.shape[1]
        arrays = {"f0": self._open(e, "pitches"), "uv": self._open(e, "uvs"),
                  "energy": self._open(e, "energys")}
        arrays.update({name: self._open(e, name) for name in self.content_dims})
        for key, a in arrays.items():
            folder = FRAME_FEATURES.get(key, key)
            if a.shape[0] != n:
                raise DataError(f"{self._file(e, folder)}: {a.shape[0]} frames, but the mel has {n}")
            if key in self.content_dims and (a.ndim != 2 or a.shape[1] != self.content_dims[key]):
                raise DataError(f"{self._file(e, folder)}: feature of shape {a.shape}, expected "
                                f"(T, model.condition_encoder.{key}_dim = {self.content_dims[key]})")
        audio = self._open(e, "audios") if self.cfg.preprocess.extract_audio else None
        hop = self.cfg.preprocess.hop_size
        if audio is not None and (audio.ndim != 1 or audio.shape[0] < n * hop):
            raise DataError(f"{self._file(e, 'audios')}: waveform of shape {audio.shape}, expected "
                            f"at least {n} frames x {hop} samples (rerun stage 1)")
        t = n if length is None else min(n, length)
        if start is None:
            if self.random_crop:
                rng = np.random.default_rng([self.seed, self.epoch, index])
                start = int(rng.integers(0, n - t + 1))
            else:
                start = (n - t) // 2
        sl = slice(start, start + t)
        lo, hi = self.mel_range[e["Dataset"]]
        # np.array copies out of the read-only memory map.
        out = {"mel": normalize_mel(np.array(mel[:, sl], np.float32), lo, hi),
               "f0": np.array(arrays["f0"][sl], np.float32),
               "uv": np.array(arrays["uv"][sl], bool),
               "energy": np.array(arrays["energy"][sl], np.float32),
               "singer": e["singer_id"]}
        out.update({name: np.array(arrays[name][sl], np.float32) for name in self.content_dims})
        if audio is not None:
            out["audio"] = np.array(audio[start * hop:(start + t) * hop], np.float32)
        if self.cfg.train.content_loss.weight > 0:
            out["mel_min"], out["mel_max"] = lo, hi
        return out

    def __getitem__(self, index: int | tuple[int, int]) -> dict:
        """Example ``index``; an ``(index, epoch)`` pair (:class:`EpochTaggedBatches`) crops as that
        epoch does, whatever :meth:`set_epoch` was given (a persistent DataLoader worker holds a
        copy of this dataset that never sees set_epoch)."""
        if isinstance(index, tuple):
            index, self.epoch = index
        return self._load(index, None, self.max_frames)


def collate(items: list[dict]) -> dict[str, torch.Tensor]:
    """Zero-pad a list of :class:`SVCDataset` examples to the longest one (layout: module doc)."""
    lengths = [it["mel"].shape[1] for it in items]
    T, B = max(lengths), len(items)
    batch = {"mask": torch.zeros(B, T, dtype=torch.bool),
             "singer": torch.tensor([it["singer"] for it in items], dtype=torch.long)}
    for key, first in items[0].items():
        if key == "singer":
            continue
        if key == "mel":
            out = torch.zeros(B, first.shape[0], T, dtype=torch.float32)
        else:
            size = max(it[key].shape[0] for it in items)  # T frames, or T * hop samples of audio
            out = torch.zeros((B, size) + first.shape[1:], dtype=torch.from_numpy(first).dtype)
        for b, it in enumerate(items):
            if key == "mel":
                out[b, :, :lengths[b]] = torch.from_numpy(it[key])
            else:
                out[b, :it[key].shape[0]] = torch.from_numpy(it[key])
        batch[key] = out
    for b, n in enumerate(lengths):
        batch["mask"][b, :n] = True
    return batch


class LengthGroupedBatchSampler(Sampler[list[int]]):
    """Batches of similar length, reshuffled every epoch, sharded over processes.

    Each epoch (train): indices are permuted with a generator seeded by (seed, epoch), cut into pools
    of ``batch_size * pool_batches``; each pool is sorted by length and cut into batches, and the
    batch order is shuffled again, so padding stays small while batches stay random. Without
    ``shuffle`` (validation) the order is by length, fixed. The batch list is truncated to a multiple
    of ``num_replicas`` and process ``rank`` takes every ``num_replicas``-th batch.

    :meth:`set_epoch` (epoch, start) picks the epoch and skips its first ``start`` batches of this
    process, which is how a resumed run continues mid-epoch without reading the skipped data.

    Raises:
        DataError: fewer batches than processes.
    """

    def __init__(self, lengths: list[int], batch_size: int, seed: int, shuffle: bool = True,
                 num_replicas: int = 1, rank: int = 0, pool_batches: int = 32):
        if batch_size < 1:
            raise DataError(f"train.batch_size must be >= 1, got {batch_size}")
        self.lengths = np.asarray(lengths)
        self.batch_size, self.seed, self.shuffle = batch_size, seed, shuffle
        self.num_replicas, self.rank, self.pool_batches = num_replicas, rank, pool_batches
        self.epoch, self.start = 0, 0
        if len(self._batches()) == 0:
            raise DataError(f"{len(lengths)} utterances make fewer batches of {batch_size} than the "
                            f"{num_replicas} processes")

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        self.epoch, self.start = epoch, start

    def _batches(self) -> list[list[int]]:
        n, bs = len(self.lengths), self.batch_size
        if not self.shuffle:
            order = np.argsort(-self.lengths, kind="stable")
            batches = [order[i:i + bs].tolist() for i in range(0, n, bs)]
        else:
            rng = np.random.default_rng([self.seed, self.epoch])
            perm = rng.permutation(n)
            pool = bs * self.pool_batches
            batches = []
            for p in range(0, n, pool):
                chunk = perm[p:p + pool]
                chunk = chunk[np.argsort(-self.lengths[chunk], kind="stable")]
                batches += [chunk[i:i + bs].tolist() for i in range(0, len(chunk), bs)]
            batches = [batches[i] for i in rng.permutation(len(batches))]
        usable = len(batches) - len(batches) % self.num_replicas
        return batches[self.rank:usable:self.num_replicas]

    def __iter__(self):
        return iter(self._batches()[self.start:])

    def __len__(self) -> int:
        return max(len(self._batches()) - self.start, 0)


class EpochTaggedBatches(Sampler[list[tuple[int, int]]]):
    """The batches of a :class:`LengthGroupedBatchSampler` as ``(index, epoch)`` pairs, so that
    :class:`SVCDataset` crops for the sampler's current epoch even in persistent DataLoader
    workers."""

    def __init__(self, batches: LengthGroupedBatchSampler):
        self.batches = batches

    def __iter__(self):
        epoch = self.batches.epoch
        return ([(i, epoch) for i in batch] for batch in self.batches)

    def __len__(self) -> int:
        return len(self.batches)
