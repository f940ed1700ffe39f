"""Which files an evaluation compares: converted outputs, their sources, the target singers'
reference recordings, and optional same-content references for MCD.

Converted outputs follow stage 3's naming (Amphion's):
``<output_dir>/<source name>/<source name>_<target singer>.wav``; the folder gives the source name and
the rest of the file name after ``<source name>_`` the target singer, so names with underscores work.

A source name is looked up in a :class:`SourceIndex` built from any mix of

* audio folders: a file ``<dir>/a/b/c.flac`` answers to ``a_b_c`` (its whole relative path joined by
  ``_``), and, when unique in the index, to ``b_c`` and ``c``. Its singer is ``a``, the first folder
  below ``<dir>`` (when the file is at least two levels deep);
* single audio files: the stem;
* processed metadata lists (stage 1's ``train.json`` / ``test.json``): the ``Uid``, with singer
  ``<Dataset>_<Singer>`` and the audio at ``Path``.

A target singer's references are matched to the output's target name exactly, or as a singers.json
key ending in ``_<name>`` (``gtsinger_demo_ZH-Alto-1`` matches folder ``ZH-Alto-1``), or the other way
round; see :func:`match_singer`.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from utils.audio import AUDIO_EXTENSIONS, audio_files
from utils.paths import resolve_path
from utils.io import load_json

log = logging.getLogger(__name__)


class LayoutError(ValueError):
    """Inputs that cannot be paired: the message names the path or name and why."""


@dataclass(frozen=True)
class Conversion:
    """One converted output and what it claims to be."""

    path: Path
    source_name: str
    target: str


def find_conversions(output_dir: str | Path) -> list[Conversion]:
    """All ``<output_dir>/<source>/<source>_<target>.<audio ext>`` files, sorted. Files in a source
    folder that do not start with ``<source>_`` are skipped with a logged line.

    Raises: LayoutError if ``output_dir`` is not a folder or holds no such file.
    """
    root = Path(output_dir)
    if not root.is_dir():
        raise LayoutError(f"converted-output folder not found: {root}")
    found = []
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        for path in sorted(p for p in folder.iterdir() if p.suffix.lower() in AUDIO_EXTENSIONS):
            prefix = folder.name + "_"
            if not path.stem.startswith(prefix) or len(path.stem) == len(prefix):
                log.warning("skipping %s: not named <source>_<target singer> inside folder <source>", path)
                continue
            found.append(Conversion(path, folder.name, path.stem[len(prefix):]))
    if not found:
        raise LayoutError(f"no converted outputs <source>/<source>_<target>.wav under {root}")
    return found


def match_singer(target: str, names) -> str | None:
    """The one name in ``names`` that is ``target``, else the one that ends with ``_<target>`` or that
    ``target`` ends with ``_<name>`` of (the longest such name); None when nothing matches."""
    names = list(names)
    if target in names:
        return target
    hits = [n for n in names if n.endswith("_" + target) or target.endswith("_" + n)]
    return max(hits, key=len) if hits else None


@dataclass(frozen=True)
class Source:
    """A source recording; ``singer`` is None when the layout does not tell."""

    path: Path
    singer: str | None


class SourceIndex:
    """Source recordings by the names stage 3 may have given them (module docstring)."""

    def __init__(self) -> None:
        self._exact: dict[str, set[Source]] = {}
        self._partial: dict[str, set[Source]] = {}

    def add(self, spec: str | Path) -> None:
        """Add a folder, an audio file or a metadata ``.json`` list.

        Raises: LayoutError if the path does not exist, or a metadata file is not a list of entries
        with Uid, Path, Dataset and Singer.
        """
        path = Path(spec)
        if path.is_dir():
            files = audio_files(path)
            if not files:
                raise LayoutError(f"no audio files under source folder {path}")
            for f in files:
                parts = f.relative_to(path).with_suffix("").parts
                source = Source(f, parts[0] if len(parts) >= 2 else None)
                self._exact.setdefault("_".join(parts), set()).add(source)
                for i in range(1, len(parts)):
                    self._partial.setdefault("_".join(parts[i:]), set()).add(source)
        elif path.suffix.lower() == ".json":
            for uid, source in read_metadata(path):
                self._exact.setdefault(uid, set()).add(source)
        elif path.is_file():
            self._exact.setdefault(path.stem, set()).add(Source(path, None))
        else:
            raise LayoutError(f"source not found: {path}")

    def lookup(self, name: str) -> Source:
        """The source recording called ``name``.

        Raises: LayoutError when no source or several sources answer to ``name``.
        """
        for table in (self._exact, self._partial):
            hits = table.get(name, set())
            if len(hits) == 1:
                return next(iter(hits))
            if len(hits) > 1:
                listed = ", ".join(sorted(str(s.path) for s in hits)[:4])
                raise LayoutError(f"source name {name!r} is ambiguous: {listed}; pass the folder "
                                  f"above the singer folders, or a metadata json, as --source")
        raise LayoutError(f"no source recording named {name!r} in the given --source paths")


def read_metadata(path: Path) -> list[tuple[str, Source]]:
    """(Uid, Source) pairs of a stage-1 metadata list (train.json / test.json); relative ``Path``
    values are taken from the project root.

    Raises: LayoutError if the file is not such a list.
    """
    try:
        entries = load_json(path)
        return [(e["Uid"], Source(resolve_path(e["Path"]), f"{e['Dataset']}_{e['Singer']}"))
                for e in entries]
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise LayoutError(f"{path}: not a metadata list of {{Uid, Path, Dataset, Singer}} ({e})") from None


def reference_sets(specs: list[str]) -> dict[str, list[Path]]:
    """Reference recordings per singer from ``--target_refs`` values, each one of

    * ``NAME=PATH``: PATH is a folder (every audio file below it) or one audio file, for singer NAME;
    * a metadata ``.json`` list: each entry's Path for singer ``<Dataset>_<Singer>``;
    * a folder of singer folders: ``<dir>/<singer>/...`` for each singer.

    Values for the same singer accumulate. Returns {singer: sorted unique paths}.
    Raises: LayoutError for a path that does not exist or holds no audio.
    """
    refs: dict[str, set[Path]] = {}
    for spec in specs:
        name, sep, value = spec.partition("=")
        if sep and not Path(spec).exists():
            path = Path(value)
            files = audio_files(path) if path.is_dir() else [path] if path.is_file() else []
            if not files:
                raise LayoutError(f"--target_refs {spec}: no audio at {path}")
            refs.setdefault(name, set()).update(files)
        elif spec.lower().endswith(".json"):
            for _, source in read_metadata(Path(spec)):
                refs.setdefault(source.singer, set()).add(source.path)
        elif Path(spec).is_dir():
            singers = [d for d in sorted(Path(spec).iterdir()) if d.is_dir() and audio_files(d)]
            if not singers:
                raise LayoutError(f"--target_refs {spec}: no singer folders with audio inside")
            for d in singers:
                refs.setdefault(d.name, set()).update(audio_files(d))
        else:
            raise LayoutError(f"--target_refs {spec}: not NAME=PATH, a metadata .json or a folder")
    return {name: sorted(paths) for name, paths in refs.items()}
