"""Stage 1 split over processes or machines: ``--shard K/N`` and ``--merge_shards N``.

Shard K of N (0 <= K < N) takes every N-th utterance of a dataset's metadata, starting at the K-th
(the corpus readers list utterances in a fixed order, so every process agrees on the split without
talking to the others), computes their features like an unsharded run, and records what a single
run would have kept in memory: each utterance's decoded duration or its skip reason, in
``<dataset_dir>/shards/K-of-N.json``. The merge (once every shard is done, on one machine that sees
the same ``processed_dir``) reads the N files and writes ``skipped.tsv``, ``train.json``,
``test.json``, ``singers.json`` and ``statistics.json`` through the same code as an unsharded run,
so they are the files that run would have written; the shard files are deleted afterwards.
"""
from __future__ import annotations

import re
import shutil
from pathlib import Path

from preprocessors.common import MetadataError
from utils.io import load_json, save_json

SHARD_DIR = "shards"
_SPEC = re.compile(r"^(\d+)/(\d+)$")


def parse_shard(text: str) -> tuple[int, int]:
    """``"K/N"`` -> (K, N).

    Raises: ValueError unless N >= 1 and 0 <= K < N.
    """
    m = _SPEC.match(text.strip())
    if not m or not int(m.group(1)) < int(m.group(2)):
        raise ValueError(f"a shard is K/N with 0 <= K < N, e.g. 0/4; got {text!r}")
    return int(m.group(1)), int(m.group(2))


def shard_of(utterances: list[dict], k: int, n: int) -> list[dict]:
    """The utterances of shard ``k`` of ``n``: every n-th, starting at the k-th."""
    return utterances[k::n]


def shard_path(dataset_dir: Path, k: int, n: int) -> Path:
    return dataset_dir / SHARD_DIR / f"{k}-of-{n}.json"


def save_shard(dataset_dir: Path, k: int, n: int, durations: dict[str, float],
               skipped: dict[str, str]) -> Path:
    """Atomically write shard ``k``'s result: {Uid: decoded duration s} of the utterances kept,
    {Uid: reason} of those skipped. Returns the path."""
    path = shard_path(dataset_dir, k, n)
    save_json(path, {"shard": [k, n], "durations": durations, "skipped": skipped})
    return path


def load_shards(dataset_dir: Path, utterances: list[dict], n: int
                ) -> tuple[dict[str, float], dict[str, str]]:
    """The union of the ``n`` shard results of a dataset whose metadata lists ``utterances``.

    Returns: ({Uid: duration}, {Uid: reason}) over all utterances.
    Raises: MetadataError naming the file when a shard is missing, unreadable, or covers other
        utterances than its share of ``utterances`` (the metadata changed since it ran).
    """
    missing = [k for k in range(n) if not shard_path(dataset_dir, k, n).is_file()]
    if missing:
        raise MetadataError(f"{dataset_dir.name}: shards {', '.join(f'{k}/{n}' for k in missing)} are "
                            f"not done (no {dataset_dir / SHARD_DIR}/K-of-{n}.json); run stage 1 with "
                            f"--shard K/{n} for each first")
    durations: dict[str, float] = {}
    skipped: dict[str, str] = {}
    for k in range(n):
        path = shard_path(dataset_dir, k, n)
        try:
            data = load_json(path)
            part_d, part_s = dict(data["durations"]), dict(data["skipped"])
        except (ValueError, KeyError, TypeError) as e:
            raise MetadataError(f"{path}: not a stage 1 shard result ({e}); rerun --shard {k}/{n}") from None
        expected = {u["Uid"] for u in shard_of(utterances, k, n)}
        if set(part_d) | set(part_s) != expected:
            raise MetadataError(f"{path} covers other utterances than shard {k}/{n} of the current "
                                f"metadata of {dataset_dir.name}; rerun --shard {k}/{n}")
        durations.update(part_d)
        skipped.update(part_s)
    return durations, skipped


def remove_shards(dataset_dir: Path) -> None:
    """Delete ``<dataset_dir>/shards`` after a successful merge."""
    shutil.rmtree(dataset_dir / SHARD_DIR, ignore_errors=True)
