"""The evaluation report: a TSV (one row per output plus the MEAN row) and a plain-text table."""
from __future__ import annotations

import csv
import math
from pathlib import Path

from evaluation.runner import COLUMNS, METRICS
from utils.io import atomic_write

# Columns of the printed table (the TSV has every column).
TABLE_COLUMNS = ["source", "target", "kind", "key_shift", *METRICS]
TEXT_COLUMNS = 3  # left-aligned; the rest are numbers


def _cell(value, digits: int) -> str:
    if isinstance(value, float):
        return "" if math.isnan(value) else f"{value:.{digits}f}"
    return str(value)


def write_tsv(rows: list[dict], path: str | Path) -> None:
    """Atomically write ``rows`` (dicts over runner.COLUMNS) as a tab-separated file with a header;
    floats with 4 decimals, NaN as an empty cell."""
    def write(tmp: Path) -> None:
        with open(tmp, "w", newline="", encoding="utf-8") as f:
            writer = csv.writer(f, delimiter="\t", lineterminator="\n")
            writer.writerow(COLUMNS)
            for row in rows:
                writer.writerow([_cell(row[c], 4) for c in COLUMNS])
    atomic_write(path, write)


def read_tsv(path: str | Path) -> list[dict]:
    """The rows of a TSV written by :func:`write_tsv`: numbers as floats, empty cells as NaN, text
    columns as strings."""
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    for row in rows:
        for key, value in row.items():
            try:
                row[key] = float(value) if value != "" else math.nan
            except ValueError:
                pass
    return rows


def format_table(rows: list[dict]) -> str:
    """A fixed-width table of TABLE_COLUMNS (3 decimals, '-' for NaN), one line per row; the mean rows
    at the end (``output`` starting with MEAN) below a rule."""
    cells = [TABLE_COLUMNS] + [[_cell(r[c], 3) or "-" for c in TABLE_COLUMNS] for r in rows]
    widths = [max(len(line[i]) for line in cells) for i in range(len(TABLE_COLUMNS))]
    lines = ["  ".join(v.ljust(w) if i < TEXT_COLUMNS else v.rjust(w) for i, (v, w) in enumerate(zip(line, widths)))
             for line in cells]
    lines.insert(1, "-" * len(lines[0]))
    n_means = sum(str(r.get("output", "")).startswith("MEAN") for r in rows)
    if n_means and len(rows) > n_means:
        lines.insert(len(lines) - n_means, "-" * len(lines[0]))
    return "\n".join(lines)
