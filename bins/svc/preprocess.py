"""Stage 1: ``cantor preprocess --config CFG [--num_workers N] [--overwrite] [--set K=V ...]``
(also ``python bins/svc/preprocess.py ...``, as run.sh --stage 1 calls it).

Reads every dataset of the config, writes mels, F0, uv, energy (and the configured content features),
train/test metadata, skipped.tsv, statistics.json and the global singers.json under processed_dir
(see processors/stage1.py). Re-running resumes: existing valid features are kept unless --overwrite.
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


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", required=True, help="experiment config (JSON5)")
    parser.add_argument("--num_workers", type=_non_negative, default=None,
                        help="processes for acoustic features (default: preprocess.num_workers; "
                             "0 = every core)")
    parser.add_argument("--overwrite", action="store_true", help="recompute existing features")
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
    try:
        cfg = load_config(args.config, args.overrides, check_datasets=True)
        check_vocoder(cfg, args.config)
        summary = run_stage1(cfg, num_workers=args.num_workers, overwrite=args.overwrite)
    except (ConfigError, MetadataError, F0ExtractorUnavailable, MissingWeightsError, ValueError) as e:
        print(f"preprocess: {e}", file=sys.stderr)
        return 2
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    from cantor.cli import run_module
    sys.exit(run_module(sys.modules[__name__]))
