"""The ``cantor`` console entry point. Each subcommand lives in a module of ``bins/`` that offers
``add_arguments(parser)`` and ``run(args)``; those modules import heavy packages only inside
``run`` so that ``cantor --help`` is instant."""
from __future__ import annotations

import utils.offline  # noqa: F401  first: usage reports off before any package is imported

import argparse
import importlib
import logging
import sys

# subcommand -> (module, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "check-config": ("bins.check_config", "validate an experiment config and print it merged"),
    "convert-whisper-ct2": ("bins.convert_whisper_ct2",
                            "CTranslate2 Whisper model.bin -> openai-whisper checkpoint"),
    "convert-contentvec": ("bins.convert_contentvec",
                           "fairseq ContentVec .pt -> transformers HubertModel folder + final_proj"),
    "index": ("bins.index", "build the feature-retrieval index of a trained experiment"),
    "infer": ("bins.infer", "stage 3 in one command: convert a song to a target singer"),
    "preprocess": ("bins.svc.preprocess", "stage 1: features, metadata, singer table, statistics"),
    "eval": ("bins.calc_metrics", "objective metrics of converted songs (F0, MCD, speaker, CER)"),
    "prepare": ("bins.prepare", "cut long recordings into training clips (RAW_DIR/<singer>/...)"),
    "train": ("bins.train", "from a folder of clips to a one-step model: stage 1, teacher, student"),
    "train-stage": ("bins.svc.train", "stage 2 alone: DiffComoSVC (teacher / distillation) or VitsSVC (one process)"),
    "webui": ("bins.webui", "the web UI: convert, batch, train and browse models in a browser"),
    "vc": ("bins.vc", "realtime voice changer: microphone (or a file) in, converted voice out"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cantor", description="Cantor: singing voice conversion (DiffComoSVC and VitsSVC recipes).")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, (module, help_text) in COMMANDS.items():
        mod = importlib.import_module(module)
        p = sub.add_parser(name, help=help_text, description=mod.__doc__ or help_text,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
        mod.add_arguments(p)
        p.set_defaults(_run=mod.run)
    return parser


def setup_logging() -> None:
    """INFO lines with time and module, for every entry point (console and scripts)."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")


def run_module(module) -> int:
    """Run one subcommand module as a script (``python bins/svc/train.py ...``, as run.sh does)."""
    parser = argparse.ArgumentParser(description=module.__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    module.add_arguments(parser)
    args = parser.parse_args()
    setup_logging()
    return module.run(args) or 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging()
    return args._run(args) or 0


if __name__ == "__main__":
    sys.exit(main())
