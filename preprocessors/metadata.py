"""Dataset metadata of stage 1: pick each dataset's reader, check every dataset path before any
work, write ``<processed_dir>/<dataset>/{train,test}.json`` and keep the one global singer table
``<processed_dir>/singers.json``.

A dataset name in ``cfg.dataset`` is read by the reader ``cfg.dataset_type.get(name, name)`` (so a
dataset called ``opencpop`` needs no type entry) from ``cfg.dataset_path[name]``.

The singer table maps ``"<Dataset>_<Singer>"`` to an integer id and is shared by every dataset,
training and inference. Updating it only appends: singers already in it keep their ids, new ones get
the next ids in sorted key order, so re-running stage 1 or adding a dataset never renumbers a
trained model's singers.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Callable

from preprocessors import custom, m4singer, opencpop, opensinger, svcc, vctk
from preprocessors.common import MetadataError, Split
from utils.paths import resolve_path
from utils.io import load_json, save_json
from utils.schema import CantorConfig

READERS: dict[str, Callable[[str, Path], Split]] = {
    "m4singer": m4singer.read,
    "opencpop": opencpop.read,
    "opensinger": opensinger.read,
    "svcc": svcc.read,
    "vctk": vctk.read,
    "custom": custom.read,
}
SINGERS_FILE = "singers.json"
_PLACEHOLDER = re.compile(r"^\s*(\[.*\]|<.*>)?\s*$")


def singer_key(dataset: str, singer: str) -> str:
    """The global singer name ``<dataset>_<singer>`` used in singers.json and statistics.json."""
    return f"{dataset}_{singer}"


def reader_for(cfg: CantorConfig, name: str) -> Callable[[str, Path], Split]:
    """The reader of dataset ``name``.

    Raises: MetadataError for a type with no reader, listing the readers.
    """
    kind = cfg.dataset_type.get(name, name)
    if kind not in READERS:
        hint = "" if name in cfg.dataset_type else f" (set dataset_type.{name} to one of them)"
        raise MetadataError(f"dataset {name!r}: no reader for type {kind!r}; readers: "
                            f"{', '.join(READERS)}{hint}")
    return READERS[kind]


def dataset_root(cfg: CantorConfig, name: str) -> Path:
    """The existing folder of dataset ``name`` (``dataset_path``, resolved from the project root).

    Raises: MetadataError if the path is missing from the config, still a placeholder, or not a
    folder.
    """
    raw = cfg.dataset_path.get(name)
    if raw is None:
        raise MetadataError(f"dataset {name!r} has no dataset_path entry; add dataset_path.{name}")
    if _PLACEHOLDER.match(raw):
        raise MetadataError(f"dataset_path.{name} = {raw!r} is a placeholder: set it to the corpus folder")
    root = resolve_path(raw)
    if not root.is_dir():
        raise MetadataError(f"dataset_path.{name} = {raw!r}: folder not found: {root}")
    return root.resolve()


def check_datasets(cfg: CantorConfig) -> dict[str, tuple[Callable[[str, Path], Split], Path]]:
    """Reader and root folder of every dataset in ``cfg.dataset``, checked before any work starts.

    Raises: MetadataError (no dataset, unknown type, missing/placeholder/absent path).
    """
    if not cfg.dataset:
        raise MetadataError("the config lists no dataset (set dataset: [...] and dataset_path)")
    return {name: (reader_for(cfg, name), dataset_root(cfg, name)) for name in cfg.dataset}


def write_split(dataset_dir: Path, split: Split) -> None:
    """Atomically write ``train.json`` and ``test.json`` of one dataset."""
    save_json(dataset_dir / "train.json", split.train)
    save_json(dataset_dir / "test.json", split.test)


def update_singer_table(processed_dir: Path, utterances: list[dict]) -> dict[str, int]:
    """Add the singers of ``utterances`` to ``processed_dir/singers.json`` and return the table.

    Existing keys keep their ids; new keys get ids from max(existing) + 1 on, in sorted order.
    Raises: MetadataError if an existing singers.json is not an object of integer ids.
    """
    path = processed_dir / SINGERS_FILE
    table: dict[str, int] = load_json(path) if path.is_file() else {}
    if not isinstance(table, dict) or not all(isinstance(v, int) for v in table.values()):
        raise MetadataError(f"{path}: expected an object of singer name -> integer id")
    new = sorted({singer_key(u["Dataset"], u["Singer"]) for u in utterances} - set(table))
    start = max(table.values(), default=-1) + 1
    table.update({key: start + i for i, key in enumerate(new)})
    if new or not path.is_file():
        save_json(path, table)
    return table
