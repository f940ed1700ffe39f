"""Where Cantor's relative paths are taken from: the project root (the folder holding ``config/``)."""
from __future__ import annotations

from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent


def resolve_path(path: str | Path) -> Path:
    """Absolute path of a config path value: ``~`` expanded, relative paths taken from the project
    root."""
    p = Path(path).expanduser()
    return p if p.is_absolute() else PROJECT_ROOT / p
