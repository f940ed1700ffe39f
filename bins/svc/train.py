"""Stage 2: train the model of the config's ``model_type``: the DiffComoSVC teacher, or distil it
(``model.comosvc.distill``), or VitsSVC (generator and discriminators).

    accelerate launch bins/svc/train.py --config CFG --exp_name NAME [--resume]
        [--resume_from_ckpt_path PATH] [--resume_type resume|finetune] [--set KEY=VALUE ...]
    cantor train-stage --config CFG --exp_name NAME ... (same options, one process)

Output: ``log_dir/NAME/`` with args.json, checkpoint/, export/ (distillation), tensorboard/ and,
once trained, index/ (the feature-retrieval index, bins/index.py).
Exit status: 0 trained, 1 the training diverged (NaN/inf weights are never saved; the error names
the step), 2 bad config, data or checkpoint (one line, before any training).
"""
from __future__ import annotations

import argparse
import sys


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", required=True, help="experiment config (JSON5)")
    parser.add_argument("--exp_name", required=True, help="experiment folder under log_dir")
    parser.add_argument("--resume", action="store_true",
                        help="continue from the newest checkpoint in log_dir/EXP_NAME/checkpoint")
    parser.add_argument("--resume_from_ckpt_path", default=None, metavar="PATH",
                        help="continue (or fine-tune) from this checkpoint file or experiment folder")
    parser.add_argument("--resume_type", choices=("resume", "finetune"), default="resume",
                        help="resume: full training state; finetune: model weights only, from step 0")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config value, e.g. --set train.batch_size=8 (repeatable)")


def run(args: argparse.Namespace) -> int:
    from models.base.checkpoint import CheckpointError
    from models.base.dataset import DataError
    from models.svc.registry import trainer_class
    from models.vocoders.formats import check_vocoder
    from utils.config import ConfigError, load_config
    try:
        cfg = load_config(args.config, args.overrides)
        if cfg.model_type == "DiffComoSVC":  # VitsSVC makes its waveform itself
            check_vocoder(cfg, args.config)
        trainer = trainer_class(cfg.model_type)(
            cfg, args.exp_name, resume=args.resume, resume_from=args.resume_from_ckpt_path,
            resume_type=args.resume_type)
    except (ConfigError, DataError, CheckpointError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    try:
        trainer.train()
    except CheckpointError as e:   # diverged to NaN: nothing saved, the earlier checkpoints kept
        print(f"error: {e}", file=sys.stderr)
        return 1
    if trainer.main:  # the feature-retrieval index of the trained model (bins/index.py)
        from bins.index import build
        if build(trainer.exp_dir) != 0:
            print(f"warning: trained, but no feature-retrieval index; build it with `cantor index "
                  f"{trainer.exp_dir}`", file=sys.stderr)
    return 0


if __name__ == "__main__":
    from cantor.cli import run_module
    sys.exit(run_module(sys.modules[__name__]))
