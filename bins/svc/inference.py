"""Stage 3: convert songs to a target singer with a trained DiffComoSVC or VitsSVC experiment (or a
so-vits-svc 4.1 G_*.pth with its config.json beside it).

    python bins/svc/inference.py --infer_expt_dir EXP --infer_output_dir OUT \\
        (--infer_source_audio_dir DIR | --infer_source_file test.json) \\
        --infer_target_speaker SINGER [--infer_key_shift N|autoshift] [--config CFG] [--set K=V ...]

Output: ``OUT/<source name>/<source name>_<SINGER>.wav``; a source's name is its path below DIR
without the extension, folders joined with "_" (``a/b/take.flac`` -> ``a_b_take``), or its Uid for
a test.json entry. Re-running resumes: what a killed run left is cleaned up and sources whose
output is complete are skipped (``--overwrite`` redoes them; models/base/batch_convert.py). Exit status: 0 all converted, 1 some sources failed (each named on one line;
the others are converted; or an output that cannot be written, e.g. on a full disk, which stops
the batch), 2 bad arguments (a key shift beyond +-48 semitones, an output folder that is a file or
not writable), config, checkpoint or target singer, found before any conversion, or a model whose
first output is full-scale noise (broken weights; nothing written).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path


def key_shift(text: str) -> int | str:
    """argparse type: an integer number of semitones within +-48
    (processors.pitch_shift.MAX_KEY_SHIFT), or "autoshift"."""
    from processors.pitch_shift import check_key_shift
    if text.strip().lower() == "autoshift":
        return "autoshift"
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer number of semitones or 'autoshift', "
                                         f"got {text!r}") from None
    try:
        check_key_shift(value)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", default=None,
                        help="experiment config (JSON5); only its inference.*, vocoder.* and "
                             "content weight paths are used, the rest comes from the checkpoint")
    parser.add_argument("--infer_expt_dir", required=True, metavar="DIR",
                        help="trained experiment folder (its newest checkpoint, or newest export "
                             "for a distilled student), a checkpoint file, or a so-vits-svc 4.1 "
                             "G_*.pth with its config.json")
    parser.add_argument("--infer_output_dir", required=True, metavar="DIR",
                        help="converted wavs go to DIR/<source name>/<source name>_<singer>.wav")
    parser.add_argument("--infer_source_audio_dir", default=None, metavar="DIR",
                        help="convert every wav/flac/mp3/ogg file below DIR")
    parser.add_argument("--infer_source_file", default=None, metavar="FILE",
                        help="convert every utterance of a processed test.json (stage 1 output)")
    parser.add_argument("--infer_target_speaker", required=True, metavar="SINGER",
                        help="target singer, a key of the experiment's singers.json "
                             "(<dataset>_<singer>), or a mix \"A:0.7,B:0.3\" (written as "
                             "<name>_A=0.7+B=0.3.wav)")
    parser.add_argument("--infer_key_shift", type=key_shift, default=0, metavar="N|autoshift",
                        help="semitones to shift the source's pitch (negative lowers), or autoshift: "
                             "match the target singer's median F0 (default: 0)")
    add_retrieval_arguments(parser, "--infer_index_rate", "--infer_protect")
    parser.add_argument("--device", default=None,
                        help="torch device, e.g. cpu or cuda:0 (default: cuda when present, else cpu)")
    parser.add_argument("--overwrite", action="store_true",
                        help="convert every source again (default: a source whose output is "
                             "already complete is skipped, so a killed run resumes)")
    add_trust_argument(parser)
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a conversion setting, e.g. --set inference.inference_steps=10 "
                             "(inference.*, vocoder.*, preprocess.whisper_path/contentvec_path)")


def add_trust_argument(parser: argparse.ArgumentParser) -> None:
    """``--trust-checkpoint`` (shared with ``cantor infer``)."""
    parser.add_argument("--trust-checkpoint", action="store_true",
                        help="load a checkpoint that has no SHA-256 digest (none that Cantor writes "
                             "lacks one); its weights must still be finite and of the size "
                             "training produces (also: inference.trust_checkpoint = true)")


def add_retrieval_arguments(parser: argparse.ArgumentParser, rate_flag: str = "--index-rate",
                            protect_flag: str = "--protect") -> None:
    """The feature-retrieval options (models/base/retrieval.py), shared by stage 3, ``cantor
    infer`` and ``cantor vc``: ``inference.index_rate`` and ``inference.protect``."""
    parser.add_argument(rate_flag, dest="index_rate", type=float, default=None, metavar="X",
                        help="inference.index_rate: share of each content feature taken from the "
                             "target singer's nearest training frames (0 .. 1; 0 = off, the "
                             "default; needs `cantor index EXPERIMENT`)")
    parser.add_argument(protect_flag, dest="protect", type=float, default=None, metavar="X",
                        help="inference.protect: unvoiced frames keep 1 - X of the source's "
                             "features (0 .. 0.5; 0.5 = off, as in RVC; default 0.33)")


def retrieval_overrides(args: argparse.Namespace) -> list[str]:
    """``--set`` overrides of the options of :func:`add_retrieval_arguments` that were given."""
    return [f"inference.{key}={getattr(args, key)}" for key in ("index_rate", "protect")
            if getattr(args, key) is not None]


def audio_dir_sources(folder: Path) -> list[tuple[str, Path]]:
    """(name, path) of every audio file below ``folder``, sorted; name = relative path without the
    extension, folders joined with "_".

    Raises: ValueError if the folder is missing, holds no audio, or two files get the same name.
    """
    from utils.audio import AUDIO_EXTENSIONS, audio_files
    if not folder.is_dir():
        raise ValueError(f"--infer_source_audio_dir: not a folder: {folder}")
    files = audio_files(folder)
    if not files:
        raise ValueError(f"no {'/'.join(e[1:] for e in AUDIO_EXTENSIONS)} file below {folder}")
    sources: dict[str, Path] = {}
    for p in files:
        name = "_".join(p.relative_to(folder).with_suffix("").parts)
        if name in sources:
            raise ValueError(f"{sources[name]} and {p} would both be written as {name!r}; rename one")
        sources[name] = p
    return list(sources.items())


def json_file_sources(path: Path) -> list[tuple[str, Path]]:
    """(Uid, Path) of every entry of a processed test.json (relative paths: from the current
    folder, else from the project root).

    Raises: ValueError for a missing or malformed file.
    """
    from utils.paths import resolve_path
    from utils.io import load_json
    try:
        entries = load_json(path)
    except (OSError, ValueError) as e:
        raise ValueError(f"--infer_source_file {path}: {e}") from None
    if not isinstance(entries, list) or not all(isinstance(e, dict) and "Uid" in e and "Path" in e
                                                for e in entries):
        raise ValueError(f"{path}: expected a list of utterances with Uid and Path (a stage 1 "
                         f"test.json)")
    return [(e["Uid"], p if (p := Path(e["Path"])).is_absolute() or p.exists()
             else resolve_path(p)) for e in entries]


def trusted(user, overrides: list[str]) -> bool:
    """``inference.trust_checkpoint`` of the ``--config`` file ``user`` (a CantorConfig or None),
    then of the ``--set`` overrides, read before the checkpoint is loaded.

    Raises: ConfigError for a malformed override."""
    from utils.config import parse_override
    trust = bool(user and user.inference.trust_checkpoint)
    for text in overrides:
        value = parse_override(text).get("inference", {}).get("trust_checkpoint")
        if value is not None:
            trust = value is True
    return trust


def load_converter(expt: str, config: str | None, overrides: list[str], device: str | None,
                   steps: int | None = None, trust: bool = False):
    """The converter of ``expt`` (DiffComoSVC or VitsSVC, as its checkpoint says; or a so-vits-svc
    4.1 G_*.pth with its config.json); ``trust`` (or :func:`trusted`): accept a checkpoint without
    a digest. Prints the error and returns None when it cannot load."""
    from models.base.checkpoint import CheckpointError
    from models.svc.registry import load_converter as load
    from processors.content import MissingWeightsError
    from utils.config import ConfigError, load_config
    try:
        user = load_config(config, overrides) if config else None
        return load(expt, device, user, overrides, steps, trust or trusted(user, overrides))
    except (ConfigError, CheckpointError, MissingWeightsError, OSError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return None


def run(args: argparse.Namespace) -> int:
    from tqdm.contrib.logging import logging_redirect_tqdm

    from models.base.batch_convert import convert_sources
    from models.base.converter import BrokenModelError, UnknownSingerError
    from utils.io import WriteError, check_writable
    if not (args.infer_source_audio_dir or args.infer_source_file):
        print("error: give --infer_source_audio_dir or --infer_source_file", file=sys.stderr)
        return 2
    try:
        sources = []
        if args.infer_source_audio_dir:
            sources += audio_dir_sources(Path(args.infer_source_audio_dir))
        if args.infer_source_file:
            sources += json_file_sources(Path(args.infer_source_file))
        output_dir = Path(args.infer_output_dir)
        if output_dir.exists() and not output_dir.is_dir():
            raise ValueError(f"--infer_output_dir {output_dir}: is a file, not a folder")
        check_writable(output_dir)
    except (ValueError, WriteError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    converter = load_converter(args.infer_expt_dir, args.config,
                               args.overrides + retrieval_overrides(args), args.device,
                               trust=args.trust_checkpoint)
    if converter is None:
        return 2
    try:
        with logging_redirect_tqdm():
            failed = convert_sources(converter, sources, args.infer_target_speaker,
                                     args.infer_key_shift, args.infer_output_dir, args.overwrite)
    except (UnknownSingerError, BrokenModelError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except WriteError as e:  # a full disk: the batch stopped at this output
        print(f"error: {e}; stopped", file=sys.stderr)
        return 1
    for path, msg in failed:
        print(f"failed: {msg}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    from cantor.cli import run_module
    sys.exit(run_module(sys.modules[__name__]))
