"""What every corpus reader shares: the utterance record, audio durations, the train/test split
container and the "hold out one whole song per singer" rule.

An utterance record is a dict with exactly the keys of :data:`FIELDS`: ``Dataset`` (the dataset
name of the config, e.g. ``opencpop``), ``Singer`` (the singer inside that dataset, e.g.
``female1``; the global singer key is ``<Dataset>_<Singer>``), ``Song``, ``Uid`` (unique inside the
dataset and usable as a file name), ``Path`` (absolute path of the audio file) and ``Duration``
(seconds, from the file header; 0.0 when the header cannot be read, and stage 1 then skips the file
with the decoding error).
"""
from __future__ import annotations

import warnings
from collections import defaultdict
from pathlib import Path
from typing import NamedTuple

import soundfile as sf

FIELDS = ("Dataset", "Singer", "Song", "Uid", "Path", "Duration")


class MetadataError(ValueError):
    """A dataset that cannot be read: the message names the dataset, the file and what is wrong."""


class Split(NamedTuple):
    """A reader's result: train and test utterance records, each sorted by Uid."""

    train: list[dict]
    test: list[dict]


def audio_duration(path: Path) -> float:
    """Duration of an audio file in seconds from its header (soundfile; librosa for mp3).

    Returns 0.0 for a file that cannot be read (stage 1 reports it when decoding).
    """
    try:
        return float(sf.info(str(path)).duration)
    except (sf.LibsndfileError, RuntimeError, TypeError):
        pass
    try:
        import librosa
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return float(librosa.get_duration(path=str(path)))
    except Exception:  # audioread raises many unrelated types
        return 0.0


def utterance(dataset: str, singer: str, song: str, uid: str, path: Path) -> dict:
    """One utterance record (see the module docstring)."""
    return {"Dataset": dataset, "Singer": singer, "Song": song, "Uid": uid,
            "Path": str(path), "Duration": audio_duration(path)}


def split_by(utterances: list[dict], is_test) -> Split:
    """Split records by the predicate ``is_test(record)``; each side sorted by Uid.

    Raises: MetadataError when two records share a Uid (their features would overwrite each other).
    """
    seen: dict[str, str] = {}
    for u in utterances:
        if u["Uid"] in seen:
            raise MetadataError(f"{u['Dataset']}: two files map to the utterance id {u['Uid']!r}: "
                                f"{seen[u['Uid']]} and {u['Path']}; rename one of them")
        seen[u["Uid"]] = u["Path"]
    train = sorted((u for u in utterances if not is_test(u)), key=lambda u: u["Uid"])
    test = sorted((u for u in utterances if is_test(u)), key=lambda u: u["Uid"])
    return Split(train, test)


def last_song_per_singer(utterances: list[dict]) -> set[tuple[str, str]]:
    """The held-out songs of the default rule: for every singer with at least two songs, the song
    whose name sorts last (Python string order). Returns {(Singer, Song)}; a singer with a single
    song keeps it for training."""
    songs: dict[str, set[str]] = defaultdict(set)
    for u in utterances:
        songs[u["Singer"]].add(u["Song"])
    return {(singer, max(names)) for singer, names in songs.items() if len(names) >= 2}


def split_last_song(utterances: list[dict]) -> Split:
    """Hold out one whole song per singer (:func:`last_song_per_singer`), so no song is in both
    splits."""
    held_out = last_song_per_singer(utterances)
    return split_by(utterances, lambda u: (u["Singer"], u["Song"]) in held_out)


def require(path: Path, dataset: str, what: str) -> Path:
    """``path`` if it exists, else MetadataError naming the dataset, the file and its role."""
    if not path.exists():
        raise MetadataError(f"{dataset}: {what} not found: {path}")
    return path


def nonempty(utterances: list[dict], dataset: str, root: Path, layout: str) -> list[dict]:
    """``utterances`` if any, else MetadataError describing the expected layout."""
    if not utterances:
        raise MetadataError(f"{dataset}: no audio files found under {root} (expected {layout})")
    return utterances
