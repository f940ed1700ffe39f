"""``cantor train DATA_DIR [--name NAME] [--base EXPERIMENT] [--preset demo|full] [--steps N]``:
from a folder of clips to a one-step model in one command (so-vits-svc-fork's ``svc train`` habit).

DATA_DIR holds ``<singer>/<song>/<clip>.wav`` (``cantor prepare`` makes it from long recordings).
The command writes ``ckpts/NAME/exp_config.json`` (singers from the folder names), runs stage 1,
trains the teacher, distils the one-step student, and prints the ``cantor infer`` command of each
singer. Re-running the same command continues where it stopped. With ``--base`` it fine-tunes a
trained teacher (e.g. ``ckpts/demo/demo_teacher``) on the new singers instead of training from
scratch. Exit status: 0 trained, 2 bad options, data or base.
"""
from __future__ import annotations

import argparse
import sys


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("data_dir", help="clips: DATA_DIR/<singer>/<song>/<clip>.wav")
    parser.add_argument("--name", default=None, help="experiment name (default: DATA_DIR's name)")
    parser.add_argument("--base", default=None, metavar="EXPERIMENT",
                        help="teacher experiment (or checkpoint) to fine-tune from")
    parser.add_argument("--keep-old-singers", action="store_true",
                        help="with --base: train on the base's own data too, not only the new")
    parser.add_argument("--preset", choices=("demo", "full"), default=None,
                        help="model size and front end: demo (CPU, minutes) or full (the published "
                             "recipe, GPU); default: full when a GPU is visible, else demo")
    parser.add_argument("--steps", type=int, default=None, metavar="N",
                        help="teacher training steps (default: the preset's); the student distils "
                             "for half as many")
    parser.add_argument("--log-root", default="ckpts", help="where experiments go (default: ckpts)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="a config value written into a new experiment's exp_config.json, e.g. "
                             "--set train.batch_size=4 (repeatable; an existing config is kept)")
    parser.add_argument("--num_workers", type=int, default=None,
                        help="stage 1 worker processes (default: every core)")


def run(args: argparse.Namespace) -> int:
    from models.base.checkpoint import CheckpointError
    from models.base.dataset import DataError
    from models.svc.comosvc.recipe import run_experiment, write_experiment
    from preprocessors.common import MetadataError
    from processors.content import MissingWeightsError
    from processors.f0 import F0ExtractorUnavailable
    from utils.config import ConfigError
    if args.steps is not None and args.steps < 1:
        print("train: --steps must be at least 1", file=sys.stderr)
        return 2
    if args.keep_old_singers and args.base is None:
        print("train: --keep-old-singers needs --base", file=sys.stderr)
        return 2
    try:
        exp, ds = write_experiment(args.data_dir, args.name, args.preset, args.base, args.steps,
                                   args.keep_old_singers, args.log_root, args.overrides)
        singers = run_experiment(exp, args.num_workers)
    except (ConfigError, DataError, CheckpointError, MetadataError, MissingWeightsError,
            F0ExtractorUnavailable) as e:
        print(f"train: {e}", file=sys.stderr)
        return 2
    print(f"trained {exp.root} ({exp.config}); convert a song with:")
    for singer in singers:
        print(f"  cantor infer SONG.wav -m {exp.student} -s {singer} --autoshift -o out_{singer}.wav")
    return 0


if __name__ == "__main__":
    from cantor.cli import run_module
    sys.exit(run_module(sys.modules[__name__]))
