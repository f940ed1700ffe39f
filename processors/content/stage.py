"""Stage 1, content part: write ``<dataset_dir>/<name>/<Uid>.npy`` (T, D) float32 for every content
feature named in ``cfg.preprocess.content_features``, T being the utterance's mel length."""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from processors.content import check_content_dims, load_content_extractors
from processors.content.base import CONTENT_SAMPLE_RATE
from utils.audio import AudioError, load_audio
from utils.paths import resolve_path
from utils.io import load_json, save_json, save_npy
from utils.schema import CantorConfig

log = logging.getLogger(__name__)


def _is_valid(path: Path, shape: tuple[int, int]) -> bool:
    """True if ``path`` is a readable float32 .npy of exactly ``shape`` (header only, no full read)."""
    try:
        arr = np.load(path, mmap_mode="r")
    except (OSError, ValueError, EOFError):
        return False
    return arr.dtype == np.float32 and arr.shape == shape


SETTINGS_FILE = "content_settings.json"


def content_settings(cfg: CantorConfig) -> dict[str, dict]:
    """What each configured content feature is computed with: {"whisper": {"path", "layer"},
    "contentvec": {"path", "final_proj"}} for the names in ``preprocess.content_features``."""
    p = cfg.preprocess
    known = {"whisper": {"path": p.whisper_path, "layer": p.whisper_layer},
             "contentvec": {"path": p.contentvec_path, "final_proj": p.contentvec_final_proj}}
    return {name: known[name] for name in p.content_features if name in known}


def changed_features(dataset_dir: Path, settings: dict[str, dict]) -> list[str]:
    """Names whose settings differ from those recorded in ``<dataset_dir>/content_settings.json``
    (a feature with no record counts as unchanged: its files were made before records existed)."""
    path = dataset_dir / SETTINGS_FILE
    old = load_json(path) if path.is_file() else {}
    return [n for n, v in settings.items() if n in old and old[n] != v]


def extract_content_for_dataset(cfg: CantorConfig, dataset_dir: Path, utterances: list[dict],
                                overwrite: bool = False) -> list[tuple[str, str]]:
    """Extract and save the content features of one processed dataset.

    For each utterance ({"Uid", "Path", ...}): T is read from ``dataset_dir/mels/<Uid>.npy``, the audio
    (``Path``, resolved from the project root if relative) is loaded at 16 kHz, and each feature is
    written atomically to ``dataset_dir/<name>/<Uid>.npy`` as float32 (T, D). Outputs that already
    have that shape are kept unless ``overwrite``; the models are loaded only if something is left
    to do. Utterances are processed ``cfg.preprocess.content_batch_size`` at a time (sorted by length).

    Returns: (Uid, reason) of every utterance skipped (no mel, undecodable or too short audio).
    Raises: MissingWeightsError (absent weights), ValueError (feature size differs from
        ``cfg.model.condition_encoder.whisper_dim`` / ``contentvec_dim``, or unusable weights).
    """
    names = list(cfg.preprocess.content_features)
    settings = content_settings(cfg)
    stale = changed_features(dataset_dir, settings)
    if stale:
        log.warning("%s: content settings changed for %s (%s); recomputing those features",
                    dataset_dir.name, ", ".join(stale), SETTINGS_FILE)
    dims = {name: getattr(cfg.model.condition_encoder, f"{name}_dim", None) for name in names}
    skipped: list[tuple[str, str]] = []
    pending: list[tuple[dict, int, list[str]]] = []  # (utterance, T, features to write)
    for utt in utterances:
        mel_path = dataset_dir / "mels" / f"{utt['Uid']}.npy"
        try:
            n_frames = int(np.load(mel_path, mmap_mode="r").shape[-1])
        except (OSError, ValueError, EOFError) as e:
            skipped.append((utt["Uid"], f"no readable mel {mel_path}: {e}"))
            continue
        todo = [n for n in names
                if overwrite or n in stale or not _is_valid(dataset_dir / n / f"{utt['Uid']}.npy", (n_frames, dims[n]))]
        if todo:
            pending.append((utt, n_frames, todo))
    if not pending:
        save_json(dataset_dir / SETTINGS_FILE, settings)
        return skipped
    device = "cuda" if torch.cuda.is_available() else "cpu"
    extractors = load_content_extractors(cfg.preprocess, device)
    check_content_dims(extractors, cfg.model.condition_encoder)
    min_samples = max(e.min_samples for e in extractors.values())
    pending.sort(key=lambda p: p[1])
    batch_size = max(1, cfg.preprocess.content_batch_size)
    with tqdm(total=len(pending), desc=f"content features {dataset_dir.name}", unit="utt") as bar:
        for b in range(0, len(pending), batch_size):
            batch = []
            for utt, n_frames, todo in pending[b:b + batch_size]:
                try:
                    wav = load_audio(resolve_path(utt["Path"]), CONTENT_SAMPLE_RATE)
                except AudioError as e:
                    skipped.append((utt["Uid"], str(e)))
                    continue
                if wav.size < min_samples:
                    skipped.append((utt["Uid"], f"{wav.size} samples at 16 kHz: too short for the "
                                                f"content models (need {min_samples})"))
                    continue
                batch.append((utt["Uid"], wav, n_frames, todo))
            for name, extractor in extractors.items():
                items = [(uid, wav, t) for uid, wav, t, todo in batch if name in todo]
                if not items:
                    continue
                feats = extractor.extract([w for _, w, _ in items], [t for _, _, t in items])
                for (uid, _, _), f in zip(items, feats):
                    save_npy(dataset_dir / name / f"{uid}.npy", f)
            bar.update(len(pending[b:b + batch_size]))
    save_json(dataset_dir / SETTINGS_FILE, settings)
    for uid, reason in skipped:
        log.warning("content features: skipped %s: %s", uid, reason)
    return skipped
