"""The web UI's path guard: every path a request names must lie inside the folders the UI was
started with (``--models``, ``--data``), after following every symlink, so that neither ``..``,
an absolute path nor a symlink can reach anything else."""
from __future__ import annotations

import os
from pathlib import Path


class PathRefused(ValueError):
    """A request named a path the UI may not touch; the message names the path and says why."""


class Sandbox:
    """The folders the UI may read and write.

    Args:
        roots: {label: folder}, e.g. {"models": Path("ckpts"), "data": Path("data")}; each is
            resolved (symlinks followed) once, here.
    """

    def __init__(self, roots: dict[str, str | Path]):
        self.roots = {label: Path(folder).expanduser().resolve() for label, folder in roots.items()}

    def describe(self) -> str:
        return ", ".join(f"{label} folder {root}" for label, root in self.roots.items())

    def root(self, label: str) -> Path:
        return self.roots[label]

    def inside(self, path: str | Path) -> bool:
        """True when ``path`` (symlinks followed) lies inside one of the roots."""
        real = Path(os.path.realpath(path))
        return any(real == r or real.is_relative_to(r) for r in self.roots.values())

    def resolve(self, text: str | Path, base: str, what: str, kind: str | None = None) -> Path:
        """The real path of a user-given ``text`` (relative paths are taken from root ``base``).

        Args:
            what: what the path is for, used in the message ("source folder", ...).
            kind: "file" or "dir" to require an existing file or folder; None allows a path that
                does not exist yet (an output).
        Returns: the resolved absolute path, inside a root.
        Raises: PathRefused: empty, a NUL byte, outside every root (``..``, absolute or through a
            symlink), or not the required kind.
        """
        text = str(text).strip()
        if not text:
            raise PathRefused(f"{what}: no path given")
        if "\0" in text:
            raise PathRefused(f"{what}: {text!r} holds a NUL byte")
        candidate = Path(text).expanduser()
        if not candidate.is_absolute():
            candidate = self.roots[base] / candidate
        real = Path(os.path.realpath(candidate))
        if not self.inside(real):
            via = " (through a symlink)" if real != Path(os.path.abspath(candidate)) else ""
            raise PathRefused(f"{what} {text!r} is outside the folders this UI may use{via}: it "
                              f"resolves to {real}; allowed: {self.describe()}")
        if kind == "file" and not real.is_file():
            raise PathRefused(f"{what} {text!r}: no such file ({real})")
        if kind == "dir" and not real.is_dir():
            raise PathRefused(f"{what} {text!r}: no such folder ({real})")
        return real
