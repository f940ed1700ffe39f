"""``cantor index EXPERIMENT``: build the feature-retrieval index of a trained experiment (per
singer, of every content feature the model uses; models/base/retrieval.py), into
``EXPERIMENT/index/``. Stage 2 runs it after training; run it again after stage 1 recomputed the
features, or for an experiment trained before indexes existed.

Conversion uses the index with ``inference.index_rate`` > 0 (``cantor infer --index-rate``).
Exit status: 0 built, 2 a bad experiment, missing or stale stage 1 data (one line naming the file),
1 the index could not be written (e.g. a full disk).
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from models.base.retrieval import MAX_VECTORS
    parser.add_argument("experiment", metavar="EXPERIMENT_DIR",
                        help="trained experiment folder (its newest export or checkpoint gives the "
                             "config and the singer table), or a checkpoint file")
    parser.add_argument("--processed-dir", default=None, metavar="DIR",
                        help="where stage 1 wrote the data (default: the checkpoint config's "
                             "preprocess.processed_dir)")
    parser.add_argument("--max-vectors", type=int, default=MAX_VECTORS, metavar="N",
                        help=f"a singer with more frames is reduced to N k-means centroids "
                             f"(default {MAX_VECTORS})")
    parser.add_argument("--trust-checkpoint", action="store_true",
                        help="read a checkpoint that has no SHA-256 digest")


def build(experiment: str | Path, processed_dir: str | Path | None = None,
          max_vectors: int | None = None, trust: bool = False) -> int:
    """Build the index of ``experiment`` and print one line per singer and a summary; the exit
    status of the module docstring (errors printed in one line)."""
    from models.base.checkpoint import CheckpointError, conversion_checkpoint, load_checkpoint
    from models.base.retrieval import MAX_VECTORS, RetrievalIndexError, build_index, index_folder
    from utils.io import WriteError
    t0 = time.perf_counter()
    try:
        file = conversion_checkpoint(experiment)
        checkpoint = load_checkpoint(file, trust)
        folder = index_folder(file)
        manifest = build_index(checkpoint, folder, Path(processed_dir) if processed_dir else None,
                               max_vectors or MAX_VECTORS)
    except (CheckpointError, RetrievalIndexError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except WriteError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    for singer, features in manifest["entries"].items():
        print(f"{singer}: " + ", ".join(f"{name} {e['frames']} frames -> {e['vectors']} vectors"
                                        for name, e in features.items()))
    print(f"index of {len(manifest['entries'])} singers written to {folder} in "
          f"{time.perf_counter() - t0:.1f} s")
    return 0


def run(args: argparse.Namespace) -> int:
    if args.max_vectors < 1:
        print("error: --max-vectors must be at least 1", file=sys.stderr)
        return 2
    return build(args.experiment, args.processed_dir, args.max_vectors, args.trust_checkpoint)


if __name__ == "__main__":
    from cantor.cli import run_module
    sys.exit(run_module(sys.modules[__name__]))
