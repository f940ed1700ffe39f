"""The one error for a pretrained file that is not where the config says: it names the file, the
config key that points to it and how to obtain it. Nothing is ever downloaded at run time."""
from __future__ import annotations

from pathlib import Path


class MissingWeightsError(FileNotFoundError):
    """A pretrained weights file (or folder) is absent; the message says where it was expected, which
    config key points there and how to get it."""

    def __init__(self, path: str | Path, config_key: str, how_to_get: str):
        self.path = Path(path)
        self.config_key = config_key
        super().__init__(f"pretrained weights not found: {self.path}\n"
                         f"  set by config key: {config_key}\n"
                         f"  how to get them: {how_to_get}")


def require(path: Path, config_key: str, how_to_get: str) -> Path:
    """Return ``path`` if it exists (file or folder), else raise :class:`MissingWeightsError`."""
    if not path.exists():
        raise MissingWeightsError(path, config_key, how_to_get)
    return path
