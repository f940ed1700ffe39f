"""``<processed_dir>/<dataset>/statistics.json``: what training normalises with and inference
de-normalises / autoshifts with.

Computed over every utterance kept by stage 1 (train and test), so that test mels stay inside the
normalisation range and every singer of singers.json has F0 statistics:

- ``mel_min`` / ``mel_max``: per mel bin, min and max of the log-mel over all frames (n_mel floats
  each); training maps each bin to [-1, 1] with them (min-max normalisation).
- ``log_energy_min`` / ``log_energy_max``: min and max of ``log(max(energy, 1e-5))`` over all frames.
- ``singers``: per ``<dataset>_<singer>`` key, over voiced frames (F0 > 0): ``f0_mean``,
  ``f0_std`` (population), ``f0_median``, ``f0_min``, ``f0_max`` in Hz and ``n_voiced_frames``; a
  singer without a voiced frame has 0.0 everywhere and ``n_voiced_frames`` 0.
"""
from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import numpy as np
from tqdm import tqdm

from preprocessors.metadata import singer_key

ENERGY_FLOOR = 1e-5


def _f0_summary(voiced: np.ndarray) -> dict:
    if voiced.size == 0:
        return {"f0_mean": 0.0, "f0_std": 0.0, "f0_median": 0.0, "f0_min": 0.0, "f0_max": 0.0,
                "n_voiced_frames": 0}
    v = voiced.astype(np.float64)
    return {"f0_mean": float(v.mean()), "f0_std": float(v.std()), "f0_median": float(np.median(v)),
            "f0_min": float(v.min()), "f0_max": float(v.max()), "n_voiced_frames": int(v.size)}


def dataset_statistics(dataset_dir: Path, utterances: list[dict]) -> dict:
    """Statistics of one dataset from its stage 1 features (``mels/``, ``pitches/``, ``energys/``).

    Args:
        dataset_dir: ``<processed_dir>/<dataset>``.
        utterances: the kept utterance records (non-empty); their features must exist.
    Returns: the statistics.json object described in the module docstring.
    Raises: ValueError if ``utterances`` is empty; OSError if a feature file is missing.
    """
    if not utterances:
        raise ValueError(f"{dataset_dir}: no utterances to compute statistics from")
    mel_min = mel_max = None
    log_e_min, log_e_max = np.inf, -np.inf
    voiced: dict[str, list[np.ndarray]] = defaultdict(list)
    for u in tqdm(utterances, desc=f"statistics {dataset_dir.name}", unit="utt"):
        mel = np.load(dataset_dir / "mels" / f"{u['Uid']}.npy")
        lo, hi = mel.min(axis=1), mel.max(axis=1)
        mel_min = lo if mel_min is None else np.minimum(mel_min, lo)
        mel_max = hi if mel_max is None else np.maximum(mel_max, hi)
        log_e = np.log(np.maximum(np.load(dataset_dir / "energys" / f"{u['Uid']}.npy"), ENERGY_FLOOR))
        log_e_min, log_e_max = min(log_e_min, float(log_e.min())), max(log_e_max, float(log_e.max()))
        f0 = np.load(dataset_dir / "pitches" / f"{u['Uid']}.npy")
        voiced[singer_key(u["Dataset"], u["Singer"])].append(f0[f0 > 0])
    return {
        "mel_min": [float(x) for x in mel_min],
        "mel_max": [float(x) for x in mel_max],
        "log_energy_min": log_e_min,
        "log_energy_max": log_e_max,
        "singers": {key: _f0_summary(np.concatenate(parts)) for key, parts in sorted(voiced.items())},
    }
