"""VCTK 0.92 (Yamagishi et al. 2019, "CSTR VCTK Corpus: English Multi-speaker Corpus for CSTR Voice
Cloning Toolkit (version 0.92)"): read speech of 110 English speakers, used as extra voices.

Layout: ``<root>/wav48_silence_trimmed/<spk>/<spk>_<nnn>_mic{1,2}.flac`` and
``<root>/speaker-info.txt`` (columns ID, AGE, GENDER, ...). Each sentence is taken once: its mic1
recording, or mic2 where mic1 is absent.

Singer: ``female_<spk>`` / ``male_<spk>`` from speaker-info.txt (so the global key is e.g.
``vctk_female_p225``), or ``<spk>`` for a speaker it does not list. Song: the sentence number
``<nnn>``. Uid: ``<singer>_<nnn>``.
Split: no official test set; for every speaker, the three lowest-numbered sentences are the test set
(as in Amphion's reader, which holds out three per speaker).
"""
from __future__ import annotations

from collections import defaultdict
from pathlib import Path

from preprocessors.common import Split, nonempty, split_by, utterance

TEST_PER_SPEAKER = 3
GENDERS = {"F": "female", "M": "male"}
MICS = ("mic1", "mic2")


def speaker_names(root: Path) -> dict[str, str]:
    """{speaker id: ``female_<id>``/``male_<id>``} from speaker-info.txt ({} if it is absent)."""
    info = root / "speaker-info.txt"
    names = {}
    if info.is_file():
        for line in info.read_text(encoding="utf-8", errors="replace").splitlines():
            cols = line.split()
            if len(cols) >= 3 and cols[2] in GENDERS:
                names[cols[0]] = f"{GENDERS[cols[2]]}_{cols[0]}"
    return names


def read(dataset: str, root: Path) -> Split:
    """Utterance records of a VCTK 0.92 tree (see the module docstring for layout and split).

    Raises: MetadataError if wav48_silence_trimmed/ holds no <spk>_<nnn>_mic{1,2}.flac.
    """
    names = speaker_names(root)
    files: dict[tuple[str, str], dict[str, Path]] = defaultdict(dict)
    for flac in (root / "wav48_silence_trimmed").glob("*/*_mic[12].flac"):
        spk, _, rest = flac.stem.partition("_")
        sentence, _, mic = rest.rpartition("_")
        files[(spk, sentence)][mic] = flac
    utts = []
    for (spk, sentence), by_mic in sorted(files.items()):
        singer = names.get(spk, spk)
        path = next(by_mic[m] for m in MICS if m in by_mic)
        utts.append(utterance(dataset, singer, sentence, f"{singer}_{sentence}", path))
    nonempty(utts, dataset, root, "wav48_silence_trimmed/<spk>/<spk>_<nnn>_mic1.flac")
    sentences: dict[str, list[str]] = defaultdict(list)
    for u in utts:
        sentences[u["Singer"]].append(u["Song"])
    test = {(s, n) for s, ns in sentences.items() for n in sorted(ns)[:TEST_PER_SPEAKER]}
    return split_by(utts, lambda u: (u["Singer"], u["Song"]) in test)
