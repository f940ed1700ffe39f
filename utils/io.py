"""Atomic writes: every file is written to a temporary sibling, flushed, then renamed into place, so
a killed run never leaves a half-written file under its final name."""
from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np

_UMASK = os.umask(0)
os.umask(_UMASK)


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it is renamed to ``path``, on error removed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600; give the file the usual permissions
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def atomic_write(path: str | Path, write: Callable[[Path], Any]) -> None:
    """Call ``write(tmp_path)`` and move the result to ``path`` atomically."""
    with atomic_path(path) as tmp:
        write(tmp)


def save_npy(path: str | Path, array: np.ndarray) -> None:
    """Atomically save ``array`` as ``.npy``."""
    def write(tmp: Path) -> None:
        with open(tmp, "wb") as f:
            np.save(f, array)
    atomic_write(path, write)


def save_json(path: str | Path, obj: Any) -> None:
    """Atomically save ``obj`` as indented UTF-8 JSON."""
    atomic_write(path, lambda tmp: tmp.write_text(json.dumps(obj, indent=2, ensure_ascii=False),
                                                  encoding="utf-8"))


def load_json(path: str | Path) -> Any:
    return json.loads(Path(path).read_text(encoding="utf-8"))
