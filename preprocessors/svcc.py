"""SVCC 2023 (Huang et al. 2023, "The Singing Voice Conversion Challenge 2023", ASRU): the training
data of the in-domain (IDF1, IDM1) and cross-domain (CDF1, CDM1) target singers.

Layout: ``<root>/Data/<singer>/<n>.wav``. Song: each file is its own song excerpt, Song = ``<n>``.
Uid: ``<singer>_<n>``.
Split: the challenge's evaluation data is a separate release, so the test set is the 12 files that
Amphion (preprocessors/__init__.py, GOLDEN_TEST_SAMPLES["svcc"]) holds out: IDF1 and CDF1
10030/10120/10140, IDM1 and CDM1 10001/10030/10120. Everything else is training data.
"""
from __future__ import annotations

from pathlib import Path

from preprocessors.common import Split, nonempty, split_by, utterance

TEST_UIDS = frozenset({
    "IDF1_10030", "IDF1_10120", "IDF1_10140", "IDM1_10001", "IDM1_10030", "IDM1_10120",
    "CDF1_10030", "CDF1_10120", "CDF1_10140", "CDM1_10001", "CDM1_10030", "CDM1_10120",
})


def read(dataset: str, root: Path) -> Split:
    """Utterance records of an SVCC 2023 tree (see the module docstring for layout and split).

    Raises: MetadataError if Data/<singer>/ holds no wav.
    """
    utts = [utterance(dataset, wav.parent.name, wav.stem, f"{wav.parent.name}_{wav.stem}", wav)
            for wav in sorted((root / "Data").glob("*/*.wav"))]
    nonempty(utts, dataset, root, "Data/<singer>/*.wav")
    return split_by(utts, lambda u: u["Uid"] in TEST_UIDS)
