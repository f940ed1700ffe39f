"""Atomic writes: every file is written to a temporary sibling, flushed, then renamed into place, so
a killed run never leaves a half-written file under its final name. A write that fails for want of
space or permission raises :class:`WriteError`, one line naming the file and the free space; the
temporary is removed and any earlier file of that name is kept."""
from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import shutil
import socket
import tempfile
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np

log = logging.getLogger(__name__)

_UMASK = os.umask(0)
os.umask(_UMASK)
# The temporaries atomic_path makes: ".<final name>.<8 random characters>.tmp".
TEMPORARY = re.compile(r"^\.(?P<name>.+)\.[A-Za-z0-9_]{8}\.tmp$")


class WriteError(OSError):
    """A file that could not be written (no space, no permission, read-only or absent folder);
    the message is one line naming the file, the reason and the free space there."""


def human_bytes(n: float) -> str:
    """``n`` bytes as "812 B", "10.2 kB", "3.4 MB", "1.2 GB" (powers of 1000)."""
    for unit in ("B", "kB", "MB", "GB"):
        if abs(n) < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    raise AssertionError("unreachable")


def existing_folder(path: Path) -> Path:
    """The nearest existing ancestor folder of ``path`` (``path`` itself when it is one)."""
    for folder in (path, *path.parents):
        if folder.is_dir():
            return folder
    return Path(path.anchor or ".")


def free_space(path: str | Path) -> str:
    """Free space of the filesystem holding ``path`` (or its nearest existing folder), e.g. "10.2
    kB free in /mnt/out"; "free space unknown" when it cannot be read."""
    folder = existing_folder(Path(path))
    try:
        return f"{human_bytes(shutil.disk_usage(folder).free)} free in {folder}"
    except OSError:
        return "free space unknown"


def write_error(path: Path, error: OSError) -> WriteError:
    """A :class:`WriteError` for ``path`` from the OSError a write raised (numpy's short write has
    no errno: "58480 requested and 10208 written")."""
    if isinstance(error, WriteError):
        return error
    reason = error.strerror or str(error) if error.errno else f"short write ({error})"
    return WriteError(f"{path}: cannot be written: {reason} ({free_space(path.parent)})")


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it is renamed to ``path``, on error removed.

    Raises: WriteError (one line: the file, the reason, the free space) when the folder cannot be
        made, the temporary cannot be created, or the write raises an OSError."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as e:
        raise write_error(path, e) from None
    os.close(fd)
    os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600; give the file the usual permissions
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    except BaseException as e:
        failure = write_error(path, e) if isinstance(e, OSError) else None  # free space with tmp
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        if failure is not None:
            raise failure from None
        raise


def check_writable(path: str | Path) -> None:
    """Check before any work that ``path`` (a file, or a folder to write into) can be created: a
    temporary file is made and removed in its nearest existing folder (no folder is created).

    Raises: WriteError naming ``path`` and why (read-only, no permission, ...).
    """
    path = Path(path)
    folder = existing_folder(path)
    try:
        fd, probe = tempfile.mkstemp(prefix=".cantor-probe.", suffix=".tmp", dir=folder)
    except OSError as e:
        raise WriteError(f"{path}: cannot be written, {folder} is not writable "
                         f"({e.strerror or e})") from None
    os.close(fd)
    os.unlink(probe)


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


def lock_path(path: str | Path) -> Path:
    """The lock file of an output: ``.<name>.lock`` beside it."""
    path = Path(path)
    return path.with_name(f".{path.name}.lock")


def lock_owner(path: str | Path) -> int | None:
    """PID of the live process that holds the lock of ``path`` (a process on another host, which
    cannot be checked, counts as live), or None: no lock, an unreadable one, or its process is gone
    (a killed run's stale lock)."""
    try:
        host, pid = lock_path(path).read_text(encoding="utf-8").split()
        pid = int(pid)
    except (OSError, ValueError):
        return None
    if host != socket.gethostname():
        return pid
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:  # alive, another user's
        pass
    return pid


@contextlib.contextmanager
def output_lock(path: str | Path) -> Iterator[int | None]:
    """Hold the lock file of the output ``path`` while it is produced; yields None, or the PID of
    another live run that already holds it (this run then holds nothing). A stale lock is taken
    over. Missing folders of ``path`` are made, and removed again on exit when still empty, so a
    failed output leaves no trace.

    Raises: WriteError when the lock cannot be created (no space, no permission)."""
    path = Path(path)
    made = [p for p in (path.parent, *path.parent.parents) if not p.exists()]
    lock = lock_path(path)
    owner = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        for _ in range(2):
            try:
                fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666 & ~_UMASK)
            except FileExistsError:
                owner = lock_owner(path)
                if owner is not None:
                    break
                with contextlib.suppress(FileNotFoundError):
                    lock.unlink()  # stale: its run was killed
                continue
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(f"{socket.gethostname()} {os.getpid()}\n")
            owner = None
            break
    except OSError as e:
        raise write_error(lock, e) from None
    try:
        yield owner
    finally:
        if owner is None:
            with contextlib.suppress(FileNotFoundError):
                lock.unlink()
        for folder in made:  # innermost first
            with contextlib.suppress(OSError):
                folder.rmdir()


def remove_stale_temporaries(folder: str | Path, suffixes: tuple[str, ...],
                             recursive: bool = False) -> int:
    """Delete what killed runs left in ``folder`` (below it too when ``recursive``): temporaries of
    :func:`atomic_path` whose final name ends with one of ``suffixes``, and stale lock files, but
    nothing of an output a live run holds the lock of.

    Returns: the number of files removed (each is logged)."""
    folder = Path(folder)
    if not folder.is_dir():
        return 0
    removed = 0
    for p in (folder.rglob(".*") if recursive else folder.glob(".*")):
        m = TEMPORARY.match(p.name)
        if m and m.group("name").endswith(suffixes):
            final = p.with_name(m.group("name"))
        elif p.name.endswith(".lock") and p.name[1:-5].endswith(suffixes):
            final = p.with_name(p.name[1:-5])
        else:
            continue
        if p.is_file() and lock_owner(final) is None:
            with contextlib.suppress(FileNotFoundError):
                p.unlink()
                removed += 1
                log.info("removed %s, left by an interrupted run", p)
    return removed
