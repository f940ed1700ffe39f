"""A folder of your own recordings.

Layout: ``<root>/<singer>/<song>/<utt>.<ext>`` or ``<root>/<singer>/<utt>.<ext>`` (ext: wav, flac,
mp3, ogg; any case; both layouts may be mixed). Hidden files and folders (``.name``) and files
directly under ``<root>`` (a README, a manifest) are ignored.

Song: the ``<song>`` folder, or for a file directly in the singer folder its own name ``<utt>``.
Uid: ``<singer>_<song>_<utt>``, or ``<singer>_<utt>`` for a file directly in the singer folder.
Split: for every singer with two or more songs, the song whose name sorts last is held out whole
(:func:`preprocessors.common.last_song_per_singer`); a singer with one song is training data only.
"""
from __future__ import annotations

from pathlib import Path

from preprocessors.common import Split, nonempty, split_last_song, utterance
from utils.audio import AUDIO_EXTENSIONS


def _visible_children(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if not p.name.startswith("."))


def _is_audio(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() in AUDIO_EXTENSIONS


def read(dataset: str, root: Path) -> Split:
    """Utterance records of a custom tree (see the module docstring for layout and split).

    Raises: MetadataError if no audio file is found, or two files share a Uid (e.g. a.wav and a.mp3).
    """
    utts = []
    for singer_dir in (p for p in _visible_children(root) if p.is_dir()):
        singer = singer_dir.name
        for entry in _visible_children(singer_dir):
            if _is_audio(entry):
                utts.append(utterance(dataset, singer, entry.stem, f"{singer}_{entry.stem}", entry))
            elif entry.is_dir():
                for f in filter(_is_audio, _visible_children(entry)):
                    utts.append(utterance(dataset, singer, entry.name,
                                          f"{singer}_{entry.name}_{f.stem}", f))
    nonempty(utts, dataset, root, "<singer>/<song>/<utt>.{wav,flac,mp3,ogg} or <singer>/<utt>.*")
    return split_last_song(utts)
