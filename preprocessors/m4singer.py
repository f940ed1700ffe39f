"""M4Singer (Zhang et al. 2022, "M4Singer: a Multi-Style, Multi-Singer and Musical Score Provided
Mandarin Singing Corpus", NeurIPS Datasets and Benchmarks).

Layout: ``<root>/meta.json`` (a list of records whose ``item_name`` is ``<singer>#<song>#<index>``)
and ``<root>/<singer>#<song>/<index>.wav``.

Split: the test set is the 8 songs of the corpus's own DiffSinger recipe (``test_prefixes`` of the
M4Singer release: Alto-2 岁月神偷 and 奇妙能力歌, Tenor-1 一千年以后 and 童话, Tenor-2 消愁 and
一荤一素, Soprano-1 念奴娇赤壁怀古 and 问春); every other song is training data.
Uid: ``<singer>_<song>_<index>`` (spaces in the song name become ``-``).
"""
from __future__ import annotations

import json
from pathlib import Path

from preprocessors.common import MetadataError, Split, nonempty, require, split_by, utterance

TEST_SONGS = frozenset({
    ("Alto-2", "岁月神偷"), ("Alto-2", "奇妙能力歌"), ("Tenor-1", "一千年以后"), ("Tenor-1", "童话"),
    ("Tenor-2", "消愁"), ("Tenor-2", "一荤一素"), ("Soprano-1", "念奴娇赤壁怀古"), ("Soprano-1", "问春"),
})


def read(dataset: str, root: Path) -> Split:
    """Utterance records of an M4Singer tree (see the module docstring for layout and split).

    Raises: MetadataError if meta.json is missing, unreadable or has a malformed item_name.
    """
    meta_path = require(root / "meta.json", dataset, "M4Singer meta.json")
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        names = [item["item_name"] for item in meta]
    except (ValueError, TypeError, KeyError) as e:
        raise MetadataError(f"{dataset}: {meta_path} is not a list of records with item_name: {e}") from None
    utts = []
    for name in names:
        parts = name.split("#")
        if len(parts) != 3:
            raise MetadataError(f"{dataset}: {meta_path}: item_name {name!r} is not <singer>#<song>#<index>")
        singer, song, index = parts
        uid = f"{singer}_{song}_{index}".replace(" ", "-")
        utts.append(utterance(dataset, singer, song, uid, root / f"{singer}#{song}" / f"{index}.wav"))
    nonempty(utts, dataset, root, "meta.json listing <singer>#<song>#<index> items")
    return split_by(utts, lambda u: (u["Singer"], u["Song"]) in TEST_SONGS)
