"""OpenSinger (Huang et al. 2021, "Multi-Singer: Fast Multi-Singer Singing Voice Vocoder With A
Large-Scale Corpus", ACM MM): Chinese singing, 28 male and 48 female singers.

Layout: ``<root>/{ManRaw,WomanRaw}/<id>_<song>/<id>_<song>_<n>.wav``.

Singer: ``Man_<id>`` / ``Woman_<id>`` (so the global key is e.g. ``opensinger_Man_0``).
Song: the folder name after ``<id>_``. Uid: ``<singer>_<song>_<n>``.
Split: the corpus has no official test set; for every singer with two or more songs, the song whose
name sorts last is held out whole (:func:`preprocessors.common.last_song_per_singer`).
"""
from __future__ import annotations

from pathlib import Path

from preprocessors.common import MetadataError, Split, nonempty, split_last_song, utterance

GENDER_FOLDERS = {"ManRaw": "Man", "WomanRaw": "Woman"}


def read(dataset: str, root: Path) -> Split:
    """Utterance records of an OpenSinger tree (see the module docstring for layout and split).

    Raises: MetadataError if neither ManRaw/ nor WomanRaw/ holds any wav, or a folder name has no
    ``<id>_`` prefix.
    """
    utts = []
    for folder, gender in GENDER_FOLDERS.items():
        for song_dir in sorted(p for p in (root / folder).glob("*") if p.is_dir()):
            singer_id, sep, song = song_dir.name.partition("_")
            if not sep:
                raise MetadataError(f"{dataset}: {song_dir} is not named <singer id>_<song>")
            singer = f"{gender}_{singer_id}"
            for wav in sorted(song_dir.glob("*.wav")):
                n = wav.stem.rsplit("_", 1)[-1]
                utts.append(utterance(dataset, singer, song, f"{singer}_{song}_{n}", wav))
    nonempty(utts, dataset, root, "ManRaw/<id>_<song>/*.wav and WomanRaw/<id>_<song>/*.wav")
    return split_last_song(utts)
