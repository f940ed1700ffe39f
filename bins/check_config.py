"""``cantor check-config CONFIG [--set K=V ...]``: load, merge and validate a config; print it.

The merged config is printed when it is valid for training and conversion; dataset paths that
stage 1 would still refuse (placeholders, missing entries) are then reported and the exit status is 2.
"""
from __future__ import annotations

import argparse
import json
import sys


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config", help="experiment config (JSON5), e.g. egs/svc/DiffComoSVC/exp_config.json")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config value, e.g. --set train.batch_size=8 (repeatable)")


def run(args: argparse.Namespace) -> int:
    from models.vocoders.formats import check_vocoder
    from utils.config import ConfigError, config_to_dict, load_config
    try:
        cfg = load_config(args.config, args.overrides, check_datasets=True)
        check_vocoder(cfg, args.config)
    except ConfigError as e:
        try:  # valid for stages 2-3? then show it, and what stage 1 still needs
            cfg = load_config(args.config, args.overrides)
            check_vocoder(cfg, args.config)
        except ConfigError:
            print(f"config error: {e}", file=sys.stderr)
            return 2
        print(json.dumps(config_to_dict(cfg), indent=2))
        print(f"config error (stage 1 needs real dataset paths): {e}", file=sys.stderr)
        return 2
    print(json.dumps(config_to_dict(cfg), indent=2))
    return 0


if __name__ == "__main__":
    from cantor.cli import run_module
    sys.exit(run_module(sys.modules[__name__]))
