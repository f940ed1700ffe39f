"""Opencpop (Wang et al. 2022, "Opencpop: A High-Quality Open Source Chinese Popular Song Corpus
for Singing Voice Synthesis", Interspeech): one female singer, 100 songs.

Layout: ``<root>/segments/{train,test}.txt`` (one ``<uid>|<text>|...`` line per segment) and
``<root>/segments/wavs/<uid>.wav``.

Split: the corpus's official lists (train.txt / test.txt; the test songs are whole songs).
Singer: ``female1``. Song: the first four digits of the uid (e.g. ``2001``). Uid: the corpus uid.
"""
from __future__ import annotations

from pathlib import Path

from preprocessors.common import Split, nonempty, require, split_by, utterance

SINGER = "female1"


def read(dataset: str, root: Path) -> Split:
    """Utterance records of an Opencpop tree (see the module docstring for layout and split).

    Raises: MetadataError if segments/train.txt or segments/test.txt is missing.
    """
    utts, test_uids = [], set()
    for split in ("train", "test"):
        listing = require(root / "segments" / f"{split}.txt", dataset, f"Opencpop {split} list")
        for line in listing.read_text(encoding="utf-8").splitlines():
            uid = line.split("|", 1)[0].strip()
            if not uid:
                continue
            utts.append(utterance(dataset, SINGER, uid[:4], uid, root / "segments" / "wavs" / f"{uid}.wav"))
            if split == "test":
                test_uids.add(uid)
    nonempty(utts, dataset, root, "segments/train.txt and segments/test.txt")
    return split_by(utts, lambda u: u["Uid"] in test_uids)
