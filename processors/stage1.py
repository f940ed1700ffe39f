"""Stage 1 of the recipe: raw corpora -> training features under ``cfg.preprocess.processed_dir``.

For every dataset of ``cfg.dataset`` (all dataset paths and the pitch tracker are checked first, so a
bad config fails before any work):

1. metadata: the corpus reader lists the utterances and their train/test split
   (preprocessors/metadata.py);
2. acoustic features, in a pool of ``num_workers`` processes with a progress bar: decode, resample
   to ``preprocess.sample_rate``, then ``mels/``, ``pitches/``, ``uvs/``, ``energys/<Uid>.npy``
   (processors/features.py), each written atomically. An utterance whose four files already exist
   and fit the config (shapes, n_mel, frame count for its duration) is not recomputed unless
   ``overwrite``, so a killed run resumes where it stopped. ``acoustic_settings.json`` records the
   preprocess keys the features depend on; when they change, the old features are deleted first.
   Temporaries a killed run left there are deleted first (not by a shard: others may be writing).
   With ``preprocess.extract_audio`` (VitsSVC) the decoded waveform goes to ``audios/<Uid>.npy``
   too; an utterance whose features are valid but whose waveform is missing only gets the
   waveform, so a cache made for DiffComoSVC serves VitsSVC without recomputing the rest;
3. content features (``preprocess.content_features``, processors/content/stage.py), only when any
   are configured;
4. ``skipped.tsv`` (Uid, Path, reason) lists every utterance dropped by step 2 or 3: undecodable,
   empty, shorter than ``preprocess.min_duration``, all silent (peak below -80 dBFS), NaN/inf
   samples, or a failed extraction. Each skip is also logged once with the file and the reason;
5. ``train.json`` / ``test.json`` hold only the utterances that survived every step (Duration
   updated to the decoded length), the global ``singers.json`` gains their singers, and
   ``statistics.json`` is computed from them (processors/statistics.py).

Over several processes or machines (processors/shards.py): ``shard=(K, N)`` runs steps 2-3 for
shard K's utterances and records its result; ``merge_shards=N`` then runs steps 4-5 from the N
results, writing what one unsharded run writes.
"""
from __future__ import annotations

import logging
import multiprocessing
import os
import shutil
from pathlib import Path

import numpy as np
from tqdm import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

from preprocessors.common import MetadataError, Split
from preprocessors.metadata import check_datasets, update_singer_table, write_split
from processors.f0 import check_f0_extractor, uses_torch_model
from processors.features import acoustic_features
from processors.shards import load_shards, remove_shards, save_shard, shard_of
from processors.statistics import dataset_statistics
from utils.audio import AudioError, load_audio
from utils.paths import resolve_path
from utils.io import (atomic_write, check_writable, load_json, remove_stale_temporaries, save_json,
                      save_npy)
from utils.schema import CantorConfig, PreprocessConfig

log = logging.getLogger(__name__)

# acoustic_features key -> folder under <processed_dir>/<dataset>/ (the stage 1 contract).
FEATURE_DIRS = {"mel": "mels", "f0": "pitches", "uv": "uvs", "energy": "energys"}
# A file whose peak |sample| is below this (-80 dBFS) is treated as silent.
SILENCE_PEAK = 1e-4
# Frames of slack between the frame count expected from the header duration and a stored feature.
FRAME_SLACK = 1
# The preprocess keys the acoustic features depend on, recorded in SETTINGS_FILE per dataset.
ACOUSTIC_KEYS = ("sample_rate", "hop_size", "n_fft", "win_size", "n_mel", "fmin", "fmax",
                 "f0_extractor", "f0_min", "f0_max")
SETTINGS_FILE = "acoustic_settings.json"
# Folder of the waveforms written with preprocess.extract_audio.
AUDIO_DIR = "audios"


def feature_path(dataset_dir: Path, feature: str, uid: str) -> Path:
    """``<dataset_dir>/<folder of feature>/<uid>.npy``."""
    return dataset_dir / FEATURE_DIRS[feature] / f"{uid}.npy"


def outputs_valid(dataset_dir: Path, utt: dict, cfg: PreprocessConfig) -> bool:
    """True if the four feature files of ``utt`` exist, load, and fit ``cfg``: mel (n_mel, T)
    float32, pitch/energy (T,) float32, uv (T,) bool, with T within one frame of
    ``round(Duration * sample_rate) // hop_size``."""
    expected = round(utt["Duration"] * cfg.sample_rate) // cfg.hop_size
    try:
        arrays = {k: np.load(feature_path(dataset_dir, k, utt["Uid"]), mmap_mode="r") for k in FEATURE_DIRS}
    except (OSError, ValueError, EOFError):
        return False
    mel = arrays["mel"]
    if mel.ndim != 2 or mel.shape[0] != cfg.n_mel or mel.dtype != np.float32:
        return False
    t = mel.shape[1]
    if t == 0 or abs(t - expected) > FRAME_SLACK:
        return False
    return all(arrays[k].shape == (t,) for k in ("f0", "uv", "energy")) and \
        arrays["uv"].dtype == np.bool_ and arrays["f0"].dtype == arrays["energy"].dtype == np.float32


def audio_valid(dataset_dir: Path, uid: str, cfg: PreprocessConfig) -> bool:
    """True if ``audios/<uid>.npy`` is a float32 waveform of the mel's T frames (T * hop_size to
    (T + 1) * hop_size - 1 samples)."""
    try:
        t = np.load(feature_path(dataset_dir, "mel", uid), mmap_mode="r").shape[1]
        audio = np.load(dataset_dir / AUDIO_DIR / f"{uid}.npy", mmap_mode="r")
    except (OSError, ValueError, IndexError):
        return False
    return audio.ndim == 1 and audio.dtype == np.float32 and \
        t * cfg.hop_size <= audio.shape[0] < (t + 1) * cfg.hop_size


def reset_if_settings_changed(dataset_dir: Path, cfg: PreprocessConfig, exclusive: bool = True) -> None:
    """Record the acoustic settings in ``<dataset_dir>/acoustic_settings.json``; when they differ
    from the recorded ones (e.g. another f0_extractor), first delete the old acoustic features so
    that none computed with the old settings survives, even if this run is killed midway.

    Raises: MetadataError instead of deleting when not ``exclusive`` (a shard: other shards may be
    writing there)."""
    settings = {key: getattr(cfg, key) for key in ACOUSTIC_KEYS}
    path = dataset_dir / SETTINGS_FILE
    old = load_json(path) if path.is_file() else None
    if old == settings:
        return
    if old is not None:
        changed = ", ".join(f"{k}: {old.get(k)!r} -> {v!r}" for k, v in settings.items() if old.get(k) != v)
        if not exclusive:
            raise MetadataError(f"{dataset_dir}: its features were made with other acoustic settings "
                                f"({changed}); a shard does not delete them while other shards may "
                                f"be writing: delete {', '.join(FEATURE_DIRS.values())} in "
                                f"{dataset_dir} first")
        log.warning("%s: acoustic settings changed (%s); deleting the old features", dataset_dir.name, changed)
        for folder in (*FEATURE_DIRS.values(), AUDIO_DIR):
            shutil.rmtree(dataset_dir / folder, ignore_errors=True)
    save_json(path, settings)


def process_utterance(utt: dict, dataset_dir: Path, cfg: PreprocessConfig,
                      audio_only: bool = False) -> tuple[str, float, str]:
    """Decode one utterance, check it and write its acoustic features (and with
    ``cfg.extract_audio`` its waveform; ``audio_only``: only the waveform).

    Returns: (Uid, decoded duration in seconds, skip reason or "" when written).
    """
    try:
        wav = load_audio(utt["Path"], cfg.sample_rate)
    except AudioError as e:
        return utt["Uid"], 0.0, str(e).removeprefix(f"{utt['Path']}: ")
    duration = wav.size / cfg.sample_rate
    if duration < cfg.min_duration:
        return utt["Uid"], duration, f"too short: {duration:.3f} s < preprocess.min_duration {cfg.min_duration} s"
    peak = float(np.abs(wav).max())
    if peak < SILENCE_PEAK:
        return utt["Uid"], duration, f"all silent: peak |sample| {peak:.2e} < {SILENCE_PEAK:.0e}"
    if cfg.extract_audio:
        save_npy(dataset_dir / AUDIO_DIR / f"{utt['Uid']}.npy", wav.astype(np.float32))
    if audio_only:
        return utt["Uid"], duration, ""
    try:
        features = acoustic_features(wav, cfg)
    except Exception as e:  # one bad file must not stop the corpus; the reason is reported
        return utt["Uid"], duration, f"feature extraction failed: {type(e).__name__}: {e}"
    for key, array in features.items():
        save_npy(feature_path(dataset_dir, key, utt["Uid"]), array)
    return utt["Uid"], duration, ""


def _warm_up(cfg: PreprocessConfig) -> None:
    """Run the feature code once on a 0.5 s tone in the parent, so that forked workers inherit the
    imported modules (librosa's take seconds), the cached mel basis and numba-compiled code (pyin)
    instead of each paying for them."""
    t = np.arange(cfg.sample_rate // 2) / cfg.sample_rate
    acoustic_features((0.3 * np.sin(2 * np.pi * 220.0 * t)).astype(np.float32), cfg)


def _worker_init() -> None:
    import torch
    torch.set_num_threads(1)  # one process per core; no oversubscription


def _process_task(task: tuple[dict, Path, PreprocessConfig, bool]) -> tuple[str, float, str]:
    return process_utterance(*task)


def _open_pool(cfg: PreprocessConfig, workers: int):
    """A pool of ``workers`` processes: forked after a warm-up in the parent, or spawned for the
    neural pitch trackers (CUDA cannot be used in a forked child)."""
    if uses_torch_model(cfg):
        return multiprocessing.get_context("spawn").Pool(workers, initializer=_worker_init)
    _warm_up(cfg)
    return multiprocessing.get_context("fork").Pool(workers, initializer=_worker_init)


def resolve_workers(num_workers: int) -> int:
    """``num_workers``, or every core when it is 0.

    Raises: ValueError for a negative count.
    """
    if num_workers < 0:
        raise ValueError(f"num_workers must be >= 0 (0 = every core), got {num_workers}")
    return num_workers or os.cpu_count() or 1


def compute_acoustic_features(dataset_dir: Path, utterances: list[dict], cfg: PreprocessConfig,
                              num_workers: int, overwrite: bool,
                              exclusive: bool = True) -> tuple[dict[str, float], dict[str, str]]:
    """Step 2 for one dataset (``exclusive``: see :func:`reset_if_settings_changed`).

    Returns: ({Uid: duration s} of utterances with valid features, {Uid: skip reason}).
    """
    reset_if_settings_changed(dataset_dir, cfg, exclusive)
    if exclusive:  # a shard leaves them: other shards may be writing beside it
        for folder in (dataset_dir, *(dataset_dir / f for f in (*FEATURE_DIRS.values(), AUDIO_DIR))):
            remove_stale_temporaries(folder, (".npy", ".json", ".tsv"))
    valid = set() if overwrite else {u["Uid"] for u in utterances
                                     if outputs_valid(dataset_dir, u, cfg)}
    audio_only = set() if not cfg.extract_audio else {
        uid for uid in valid if not audio_valid(dataset_dir, uid, cfg)}
    done = {u["Uid"]: u["Duration"] for u in utterances
            if u["Uid"] in valid and u["Uid"] not in audio_only}
    todo = [u for u in utterances if u["Uid"] not in done]
    log.info("%s: %d utterances, %d already have valid features, %d to compute (%d of them only "
             "their waveform)", dataset_dir.name, len(utterances), len(done), len(todo),
             len(audio_only))
    skipped: dict[str, str] = {}
    tasks = [(u, dataset_dir, cfg, u["Uid"] in audio_only) for u in todo]
    workers = min(num_workers, len(tasks))
    bar = tqdm(total=len(tasks), desc=f"features {dataset_dir.name}", unit="utt")
    with logging_redirect_tqdm(), bar:
        pool = _open_pool(cfg, workers) if workers > 1 else None
        results = pool.imap_unordered(_process_task, tasks) if pool else map(_process_task, tasks)
        try:
            for uid, duration, reason in results:
                if reason:
                    skipped[uid] = reason
                else:
                    done[uid] = duration
                bar.update()
        finally:
            if pool is not None:
                pool.terminate()
                pool.join()
    return done, skipped


def _content_skips(cfg: CantorConfig, dataset_dir: Path, kept: list[dict], overwrite: bool) -> dict[str, str]:
    if not cfg.preprocess.content_features or not kept:
        return {}
    from processors.content.stage import extract_content_for_dataset
    return dict(extract_content_for_dataset(cfg, dataset_dir, kept, overwrite))


def write_skipped(path: Path, utterances: list[dict], skipped: dict[str, str]) -> None:
    """Atomically write ``skipped.tsv``: header ``Uid\\tPath\\treason``, one row per skipped utterance."""
    rows = ["Uid\tPath\treason"] + [
        "\t".join((u["Uid"], u["Path"], " ".join(skipped[u["Uid"]].split())))
        for u in utterances if u["Uid"] in skipped]
    atomic_write(path, lambda tmp: tmp.write_text("\n".join(rows) + "\n", encoding="utf-8"))


def extract_features(cfg: CantorConfig, dataset_dir: Path, utterances: list[dict], num_workers: int,
                     overwrite: bool, exclusive: bool = True) -> tuple[dict[str, float], dict[str, str]]:
    """Steps 2-3 for ``utterances`` of one dataset.

    Returns: ({Uid: decoded duration s} of the utterances with acoustic features, {Uid: skip
    reason} of those dropped by step 2 or 3).
    """
    durations, skipped = compute_acoustic_features(dataset_dir, utterances, cfg.preprocess,
                                                   num_workers, overwrite, exclusive)
    kept = [dict(u, Duration=round(durations[u["Uid"]], 4)) for u in utterances if u["Uid"] in durations]
    skipped.update(_content_skips(cfg, dataset_dir, kept, overwrite))
    return durations, skipped


def preprocess_dataset(cfg: CantorConfig, name: str, split: Split, dataset_dir: Path,
                       num_workers: int, overwrite: bool) -> dict:
    """Steps 2-5 for one dataset whose metadata is ``split``; returns its summary counts.

    Raises: MetadataError if every utterance was skipped.
    """
    durations, skipped = extract_features(cfg, dataset_dir, split.train + split.test, num_workers,
                                          overwrite)
    return finish_dataset(name, split, dataset_dir, durations, skipped)


def preprocess_shard(cfg: CantorConfig, split: Split, dataset_dir: Path, shard: tuple[int, int],
                     num_workers: int, overwrite: bool) -> dict:
    """Steps 2-3 for shard (K, N) of one dataset, recorded for the merge (processors/shards.py);
    returns the shard's summary counts.

    Raises: MetadataError if the dataset's features were made with other acoustic settings.
    """
    k, n = shard
    mine = shard_of(split.train + split.test, k, n)
    durations, skipped = extract_features(cfg, dataset_dir, mine, num_workers, overwrite,
                                          exclusive=False)
    save_shard(dataset_dir, k, n, durations, skipped)
    return {"shard": f"{k}/{n}", "utterances": len(mine), "skipped": len(skipped),
            "hours": sum(d for u, d in durations.items() if u not in skipped) / 3600}


def finish_dataset(name: str, split: Split, dataset_dir: Path, durations: dict[str, float],
                   skipped: dict[str, str]) -> dict:
    """Steps 4-5 from the results of steps 2-3 (:func:`extract_features`, or the merged shards);
    returns the dataset's summary counts.

    Raises: MetadataError if every utterance was skipped.
    """
    utterances = split.train + split.test
    kept = [dict(u, Duration=round(durations[u["Uid"]], 4)) for u in utterances if u["Uid"] in durations]
    for u in utterances:
        if u["Uid"] in skipped:
            log.warning("skipped %s: %s", u["Path"], skipped[u["Uid"]])
    write_skipped(dataset_dir / "skipped.tsv", utterances, skipped)
    kept = [u for u in kept if u["Uid"] not in skipped]
    if not kept:
        raise MetadataError(f"{name}: every utterance was skipped; reasons in {dataset_dir / 'skipped.tsv'}")
    test_uids = {u["Uid"] for u in split.test}
    final = Split([u for u in kept if u["Uid"] not in test_uids], [u for u in kept if u["Uid"] in test_uids])
    write_split(dataset_dir, final)
    update_singer_table(dataset_dir.parent, kept)
    save_json(dataset_dir / "statistics.json", dataset_statistics(dataset_dir, kept))
    return {"train": len(final.train), "test": len(final.test), "skipped": len(skipped),
            "hours": sum(u["Duration"] for u in kept) / 3600}


def run_stage1(cfg: CantorConfig, num_workers: int | None = None, overwrite: bool = False,
               shard: tuple[int, int] | None = None, merge_shards: int = 0) -> dict[str, dict]:
    """Run stage 1 for every dataset of ``cfg`` (see the module docstring).

    Args:
        num_workers: processes for acoustic features; None = ``preprocess.num_workers``; 0 = every core.
        overwrite: recompute features that already exist.
        shard: (K, N): only steps 2-3 for shard K of N (processors/shards.py).
        merge_shards: N > 0: only steps 4-5, from the results of shards 0..N-1.
    Returns: {dataset: {"train", "test", "skipped", "hours"}}; for a shard {dataset:
        {"shard", "utterances", "skipped", "hours"}}.
    Raises:
        MetadataError: a dataset that cannot be read (checked for all datasets before any work), or
            one whose every utterance was skipped; a shard result that is missing or stale; a
            shard run over features made with other settings.
        ValueError: both ``shard`` and ``merge_shards``.
        processors.f0.F0ExtractorUnavailable: the pitch tracker's package is not importable.
        processors.content.MissingWeightsError / ValueError: absent or unusable content model
            weights (checked before any work, processors.content.check_content_weights).
        utils.io.WriteError: ``processed_dir`` is not writable (checked before any work), or a
            feature file could not be written (a full disk; the run stops, nothing half-written).
    """
    if shard is not None and merge_shards:
        raise ValueError("stage 1 runs one shard or merges the shards, not both")
    from processors.content import check_content_weights
    datasets = check_datasets(cfg)
    check_f0_extractor(cfg.preprocess)
    if not merge_shards:  # the merge reads no audio
        check_content_weights(cfg.preprocess, cfg.model.condition_encoder)
    workers = resolve_workers(cfg.preprocess.num_workers if num_workers is None else num_workers)
    processed = resolve_path(cfg.preprocess.processed_dir)
    check_writable(processed)
    summary = {}
    for name, (reader, root) in datasets.items():
        log.info("%s: reading %s", name, root)
        split = reader(name, root)
        dataset_dir = processed / name
        if shard is not None:
            summary[name] = preprocess_shard(cfg, split, dataset_dir, shard, workers, overwrite)
        elif merge_shards:
            durations, skipped = load_shards(dataset_dir, split.train + split.test, merge_shards)
            summary[name] = finish_dataset(name, split, dataset_dir, durations, skipped)
            remove_shards(dataset_dir)
        else:
            summary[name] = preprocess_dataset(cfg, name, split, dataset_dir, workers, overwrite)
        log.info("%s: %s", name, summary[name])
    return summary
