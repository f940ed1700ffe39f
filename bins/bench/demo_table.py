"""The demo's main table (issue 13): one row per model of a ``run_demo.sh`` output folder, from
each model's ``metrics.tsv`` (``cantor eval``) and ``convert.log`` (stage 3's closing lines).

Columns: self-reconstruction MCD (dB), F0 RMSE (cents) and GV (dB) (the ``MEAN self`` row: held-out
takes converted into their own singer, scored against the real take); for the conversions into
other singers (``kind`` cross): similarity to the target, gain over the key-shift control and how
many outputs beat it, FPC; over every output (both kinds) with CER: CER relative to the copy
synthesis (mean ``cer`` / mean ``cer_copy``), the mean of CER capped at 1 per take
(``cer_capped``), the median CER, the capped ratio (mean ``cer_capped`` / mean of ``cer_copy``
capped at 1) and the mean content distance (Whisper encoder features against the source's,
``content_distance``); the real-time factor of the whole stage 3 (all pairs files: seconds taken /
seconds of audio). A column an older metrics.tsv lacks shows as "-".

    python3 bins/bench/demo_table.py out/demo [--models mu teacher student student_2steps]

Prints a Markdown table; exits 2 when a model's metrics.tsv is missing.
"""
from __future__ import annotations

import argparse
import math
import re
import statistics
import sys
from pathlib import Path

from evaluation.report import read_tsv

# DiffComoSVC's run_demo.sh models (the default), then VitsSVC's.
COMOSVC_MODELS = ["mu", "teacher", "student", "student_2steps"]
LABELS = {"mu": "`mu` alone (teacher, 0 steps)", "teacher": "teacher, 4 Euler steps",
          "student": "student, 1 step", "student_2steps": "student, 2 steps",
          "vits": "VitsSVC (egs/svc/VitsSVC/run_demo.sh)"}
# "12.3 s of audio in 4.5 s: real-time factor ..." (models/base/converter.py, ConversionTimings)
TIMING = re.compile(r"([0-9.]+) s of audio in ([0-9.]+) s: real-time factor")


def real_time_factor(log: Path) -> float:
    """Seconds taken over seconds of audio, summed over every stage-3 run in ``log`` (NaN if none)."""
    if not log.exists():
        return math.nan
    pairs = [(float(a), float(t)) for a, t in TIMING.findall(log.read_text(encoding="utf-8"))]
    audio = sum(a for a, _ in pairs)
    return sum(t for _, t in pairs) / audio if audio else math.nan


def model_row(folder: Path) -> dict:
    """The main table's figures for one model folder (see the module docstring)."""
    rows = read_tsv(folder / "metrics.tsv")
    outputs = [r for r in rows if not str(r["output"]).startswith("MEAN")]
    self_rows = [r for r in outputs if r["kind"] == "self"]
    cross = [r for r in outputs if r["kind"] == "cross"]

    def mean(rs: list[dict], key: str) -> float:
        values = [r.get(key, math.nan) for r in rs]
        values = [v for v in values if not math.isnan(v)]
        return sum(values) / len(values) if values else math.nan

    gains = [r["sim_gain"] for r in cross if not math.isnan(r["sim_gain"])]
    cers = [r["cer"] for r in outputs if not math.isnan(r["cer"])]
    both = [r for r in outputs if not (math.isnan(r["cer"]) or math.isnan(r["cer_copy"]))]
    copy = mean(both, "cer_copy")
    copy_capped = sum(min(r["cer_copy"], 1.0) for r in both) / len(both) if both else math.nan
    return {"mcd": mean(self_rows, "mcd_db"), "f0": mean(self_rows, "f0_rmse_cents"),
            "gv": mean(self_rows, "gv_db"), "sim": mean(cross, "sim_target"),
            "gain": sum(gains) / len(gains) if gains else math.nan,
            "wins": f"{sum(g > 0 for g in gains)}/{len(gains)}", "fpc": mean(cross, "fpc"),
            "cer_rel": mean(both, "cer") / copy if both and copy > 0 else math.nan,
            "cer_capped": mean(outputs, "cer_capped"),
            "cer_median": statistics.median(cers) if cers else math.nan,
            "cer_capped_rel": mean(both, "cer_capped") / copy_capped if both and copy_capped > 0
            else math.nan,
            "content": mean(outputs, "content_distance"),
            "rtf": real_time_factor(folder / "convert.log")}


def markdown(rows: dict[str, dict]) -> str:
    """The table, one line per model."""
    def f(value: float, digits: int, sign: bool = False) -> str:
        return "-" if math.isnan(value) else f"{value:{'+' if sign else ''}.{digits}f}"

    lines = ["| model | self-rec. MCD dB | F0 RMSE cents | GV dB | sim. to target | gain over key-shift "
             "control (beat it) | FPC | CER / copy synthesis | CER capped at 1 | CER median | "
             "capped CER / copy synthesis | content distance | RTF |", "|---" * 13 + "|"]
    for name, r in rows.items():
        lines.append(f"| {LABELS.get(name, name)} | {f(r['mcd'], 2)} | {f(r['f0'], 0)} | "
                     f"{f(r['gv'], 2, True)} | {f(r['sim'], 3)} | {f(r['gain'], 3, True)} ({r['wins']}) | "
                     f"{f(r['fpc'], 3)} | {f(r['cer_rel'], 2)} | {f(r['cer_capped'], 3)} | "
                     f"{f(r['cer_median'], 3)} | {f(r['cer_capped_rel'], 2)} | "
                     f"{f(r['content'], 3)} | {f(r['rtf'], 3)} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path, help="run_demo.sh's output folder, e.g. out/demo")
    parser.add_argument("--models", nargs="+", default=COMOSVC_MODELS,
                        help="model folders under OUT (default: DiffComoSVC's four)")
    args = parser.parse_args(argv)
    missing = [str(args.out / m / "metrics.tsv") for m in args.models
               if not (args.out / m / "metrics.tsv").exists()]
    if missing:
        print(f"demo_table: no metrics: {', '.join(missing)} (run run_demo.sh first)", file=sys.stderr)
        return 2
    print(markdown({m: model_row(args.out / m) for m in args.models}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
