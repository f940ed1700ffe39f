"""``cantor prepare RAW_DIR [-o OUT_DIR]``: cut long recordings of each singer at silences into
2-15 s training clips (``OUT_DIR/<singer>/<recording>/<n>.wav``), ready for ``cantor train OUT_DIR``.

Prints per singer the clips and minutes written, and a warning for a singer below 5 clips or
2 minutes. Exit status: 0 done (a bad file is named and left out), 1 some files failed, 2 bad options.
"""
from __future__ import annotations

import argparse
import sys

from processors.slicer import SliceSettings

_D = SliceSettings()


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("raw_dir", help="RAW_DIR/<singer>/**/*.{wav,flac,mp3,ogg}")
    parser.add_argument("-o", "--output", default=None, metavar="OUT_DIR",
                        help="where the clips go (default: RAW_DIR + '_clips' beside it)")
    parser.add_argument("--sample-rate", type=int, default=44100, help="clips' rate, Hz (default 44100)")
    parser.add_argument("--threshold-db", type=float, default=_D.threshold_db,
                        help=f"RMS below this (dBFS) is silence (default {_D.threshold_db})")
    parser.add_argument("--min-length", type=float, default=_D.min_length,
                        help=f"shortest clip, s (default {_D.min_length})")
    parser.add_argument("--max-length", type=float, default=_D.max_length,
                        help=f"longest clip, s (default {_D.max_length})")
    parser.add_argument("--min-interval", type=float, default=_D.min_interval,
                        help=f"shortest silence that may be cut, s (default {_D.min_interval})")
    parser.add_argument("--hop", type=float, default=_D.hop, help=f"analysis hop, s (default {_D.hop})")
    parser.add_argument("--max-sil-kept", type=float, default=_D.max_sil_kept,
                        help=f"silence kept at each side of a cut, s (default {_D.max_sil_kept})")


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from preprocessors.prepare import MIN_CLIPS, MIN_MINUTES, prepare
    settings = SliceSettings(args.threshold_db, args.min_length, args.min_interval, args.hop,
                             args.max_sil_kept, args.max_length)
    raw = Path(args.raw_dir)
    out = Path(args.output) if args.output else raw.with_name(raw.name + "_clips")
    try:
        summary = prepare(raw, out, args.sample_rate, settings)
    except ValueError as e:
        print(f"prepare: {e}", file=sys.stderr)
        return 2
    for singer, s in summary.items():
        for msg in s.failed:
            print(f"prepare: skipped {msg}", file=sys.stderr)
        warn = (f"  WARNING: fewer than {MIN_CLIPS} clips or {MIN_MINUTES:g} minutes: too little "
                f"to train this voice well") if s.thin else ""
        failed = f", {len(s.failed)} files failed" if s.failed else ""
        print(f"{singer}: {s.clips} clips, {s.seconds / 60:.1f} min{failed}{warn}")
    print(f"clips in {out}; next: cantor train {out}")
    return 1 if any(s.failed for s in summary.values()) else 0


if __name__ == "__main__":
    from cantor.cli import run_module
    sys.exit(run_module(sys.modules[__name__]))
