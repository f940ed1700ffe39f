"""Stage 1: ``cantor preprocess --config CFG [--num_workers N] [--overwrite] [--set K=V ...]
[--shard K/N | --merge_shards N]`` (also ``python bins/svc/preprocess.py ...``, as run.sh --stage 1
calls it).

Reads every dataset of the config, writes mels, F0, uv, energy (and the configured content features),
train/test metadata, skipped.tsv, statistics.json and the global singers.json under processed_dir
(see processors/stage1.py). Re-running resumes: existing valid features are kept unless --overwrite.
Over N machines or processes sharing processed_dir: run ``--shard K/N`` for K = 0..N-1 (each
extracts its share of the utterances), then ``--merge_shards N`` once (metadata and statistics,
the files an unsharded run writes; processors/shards.py).
"""
from __future__ import annotations

import argparse
import json
import sys


def _non_negative(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError("must be >= 0 (0 = every core)")
    return value


def _shard(text: str) -> tuple[int, int]:
    from processors.shards import parse_shard
    try:
        return parse_shard(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be >= 1")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", required=True, help="experiment config (JSON5)")
    parser.add_argument("--num_workers", type=_non_negative, default=None,
                        help="processes for acoustic features (default: preprocess.num_workers; "
                             "0 = every core)")
    parser.add_argument("--overwrite", action="store_true", help="recompute existing features")
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--shard", type=_shard, default=None, metavar="K/N",
                       help="extract only shard K of N (0 <= K < N) of every dataset; then "
                            "--merge_shards N")
    group.add_argument("--merge_shards", type=_positive, default=0, metavar="N",
                       help="write metadata and statistics from the results of shards 0..N-1")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config value, e.g. --set preprocess.content_features=[] "
                             "(repeatable)")


def run(args: argparse.Namespace) -> int:
    from preprocessors.common import MetadataError
    from processors.content import MissingWeightsError
    from processors.f0 import F0ExtractorUnavailable
    from processors.stage1 import run_stage1
    from models.vocoders.formats import check_vocoder
    from utils.config import ConfigError, load_config
    from utils.io import WriteError
    try:
        cfg = load_config(args.config, args.overrides, check_datasets=True)
        check_vocoder(cfg, args.config)
        summary = run_stage1(cfg, num_workers=args.num_workers, overwrite=args.overwrite,
                             shard=args.shard, merge_shards=args.merge_shards)
    except (ConfigError, MetadataError, F0ExtractorUnavailable, MissingWeightsError, ValueError,
            WriteError) as e:
        print(f"preprocess: {e}", file=sys.stderr)
        return 2
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    from cantor.cli import run_module
    sys.exit(run_module(sys.modules[__name__]))
