"""The demos' conversion pairs (run_demo.sh of both recipes): for each singer i (sorted by name) of
a stage-1 ``test.json``, the held-out utterances of singers i, i-1 and i-2 (mod the number of
singers), so every take is converted into its own singer (self-reconstruction) and into the next
two. Writes ``FOLDER/<dataset>_<singer>.json``, one metadata list per target singer.
``--offsets 0``: self-reconstructions only (the intelligibility experiments of the recipe README).

    python3 bins/bench/demo_pairs.py data/demo/processed/gtsinger_demo/test.json out/demo/pairs \
        [--offsets 0 1 2]
"""
from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

from utils.io import load_json, save_json

OFFSETS = (0, 1, 2)


def write_pairs(test: list[dict], folder: Path, offsets: Sequence[int] = OFFSETS) -> list[Path]:
    """One list per target singer i: the utterances of the singers i - k for k in ``offsets``
    (module doc); returns the files written."""
    singers = sorted({u["Singer"] for u in test})
    written = []
    for i, target in enumerate(singers):
        sources = {singers[(i - k) % len(singers)] for k in offsets}
        path = folder / f"{test[0]['Dataset']}_{target}.json"
        save_json(path, [u for u in test if u["Singer"] in sources])
        written.append(path)
    return written


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("test_json", type=Path)
    parser.add_argument("folder", type=Path)
    parser.add_argument("--offsets", type=int, nargs="+", default=list(OFFSETS),
                        help="target singer i takes the sources of singers i - k (sorted by name) "
                             "for each k (default: %(default)s; 0 alone: self-reconstructions)")
    args = parser.parse_args(argv)
    write_pairs(load_json(args.test_json), args.folder, args.offsets)


if __name__ == "__main__":
    main()
