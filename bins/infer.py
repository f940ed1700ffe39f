"""``cantor infer SONG -m EXPERIMENT -s SINGER [-t SEMITONES | --autoshift] [-o OUT.wav]``: convert
one song to a target singer in one command (the so-vits-svc-fork ``svc infer`` habit).

The experiment folder alone decides everything about the model (teacher or distilled student,
features, singers); the options below only steer this conversion. Exit status: 0 converted,
1 the song could not be converted (the error names it) or the output not written (a full disk;
the error names the output and the free space), 2 bad options (a missing song, a key shift beyond
+-48 semitones, an output path that is a folder or not writable), experiment, singer, or a model
whose first output is full-scale noise (broken weights). Every error is one line naming
the file; nothing is written unless the conversion succeeded.
"""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from bins.svc.inference import add_retrieval_arguments, add_trust_argument, retrieval_overrides

log = logging.getLogger(__name__)


def semitones(text: str) -> int:
    """argparse type: a whole number of semitones within +-48
    (processors.pitch_shift.MAX_KEY_SHIFT)."""
    from processors.pitch_shift import check_key_shift
    try:
        value = int(text)
        check_key_shift(value)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e) if "semitones" in str(e) else
                                         f"expected a whole number of semitones, got {text!r}") from None
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("song", help="the song to convert (wav, flac, mp3 or ogg; any sample rate)")
    parser.add_argument("-m", "--model", required=True, metavar="EXPERIMENT_DIR",
                        help="trained experiment folder, e.g. ckpts/svc/student (its newest export "
                             "or checkpoint is used), a checkpoint file, or a so-vits-svc 4.1 "
                             "G_*.pth with its config.json beside it")
    parser.add_argument("-s", "--singer", required=True, metavar="TARGET_SINGER",
                        help="target singer, a key of the experiment's singers.json, e.g. "
                             "opencpop_female1 (an unknown name lists the known ones), or a mix of "
                             "singers, e.g. \"A:0.7,B:0.3\" (weights normalised)")
    shift = parser.add_mutually_exclusive_group()
    shift.add_argument("-t", "--transpose", type=semitones, default=0, metavar="SEMITONES",
                       help="shift the pitch by this many semitones (-48 .. 48), negative lowers "
                            "(default: 0)")
    shift.add_argument("-a", "--autoshift", action="store_true",
                       help="shift the pitch so the song's median matches the target singer's "
                            "(rounded to whole semitones unless inference.autoshift_round=false)")
    parser.add_argument("-o", "--output", default=None, metavar="OUT.wav",
                        help="output file, 16-bit wav at the model's sample rate "
                             "(default: <song name>_<singer>.wav in the current folder)")
    add_retrieval_arguments(parser)
    parser.add_argument("--steps", type=int, default=None, metavar="N",
                        help="DiffComoSVC sampler steps: teacher default inference.inference_steps "
                             "(40), student default inference.student_inference_steps (1)")
    parser.add_argument("--device", default=None,
                        help="torch device, e.g. cpu or cuda:0 (default: cuda when present, else cpu)")
    add_trust_argument(parser)
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a conversion setting, e.g. --set vocoder.path=pretrained/bigvgan "
                             "(inference.*, vocoder.*, preprocess.whisper_path/contentvec_path)")


def run(args: argparse.Namespace) -> int:
    from bins.svc.inference import load_converter
    from tqdm.contrib.logging import logging_redirect_tqdm

    from models.base.batch_convert import one_line_error
    from models.base.converter import AUTOSHIFT, BrokenModelError, UnknownSingerError
    from models.base.singer_mix import file_label
    from utils.audio import AudioError, check_output_file, save_wav
    from utils.io import WriteError, output_lock
    song = Path(args.song)
    if not song.is_file():
        print(f"error: {song}: {'is a folder' if song.is_dir() else 'no such file'}; give the "
              f"song to convert", file=sys.stderr)
        return 2
    out = Path(args.output) if args.output else Path(f"{song.stem}_{file_label(args.singer)}.wav")
    try:
        check_output_file(out)
    except AudioError as e:
        print(f"error: -o {e}", file=sys.stderr)
        return 2
    converter = load_converter(args.model, None, args.overrides + retrieval_overrides(args),
                               args.device, args.steps, args.trust_checkpoint)
    if converter is None:
        return 2
    try:
        converter.check_target(args.singer)
    except UnknownSingerError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    try:
        with logging_redirect_tqdm(), output_lock(out) as other:
            if other is not None:
                log.warning("%s: another run (pid %d) is writing it too; the one that finishes "
                            "last replaces the other's output", out, other)
            result = converter.convert_file(song, args.singer,
                                            AUTOSHIFT if args.autoshift else args.transpose)
            save_wav(out, result.wav, result.sample_rate)
    except BrokenModelError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except WriteError as e:  # e.g. a full disk; an earlier file of that name is kept
        print(f"error: -o {e}", file=sys.stderr)
        return 1
    except Exception as e:  # report any failure on this song with its name, as a user error
        print(f"error: {one_line_error(e, song)}", file=sys.stderr)
        return 1
    print(f"{song} -> {out} ({args.singer}, key shift {result.key_shift:+g} semitones, "
          f"{converter.describe()}, {converter.device}): {converter.timings.summary()}")
    return 0


if __name__ == "__main__":
    from cantor.cli import run_module
    sys.exit(run_module(sys.modules[__name__]))
