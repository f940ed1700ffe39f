"""Trained experiments under the UI's models folder: finding them, describing them (steps,
singers, teacher or student, files) without loading their weights, and loading one for conversion
(:func:`load_converter`, the one place that picks the converter class)."""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

from models.base.checkpoint import (CHECKPOINT_DIR, EXPORT_DIR, conversion_checkpoint,
                                    list_checkpoints)

from cantor.webui.sandbox import PathRefused, Sandbox

log = logging.getLogger(__name__)

MAX_DEPTH = 4  # experiment folders are looked for this many levels below the models folder


@dataclass(frozen=True)
class Experiment:
    """What the UI shows of a trained experiment: ``name`` its path below the models folder,
    ``file`` the checkpoint conversion loads, ``student`` True for a distilled student, ``step``
    its optimizer steps, ``singers`` the target singers (sorted), ``default_steps`` the sampler
    steps its config gives, ``f0_extractor`` the pitch tracker it was trained with."""

    name: str
    folder: Path
    file: Path
    student: bool
    step: int
    singers: tuple[str, ...]
    default_steps: int
    f0_extractor: str
    checkpoints: int
    exports: int

    @property
    def kind(self) -> str:
        return "student" if self.student else "teacher"

    @property
    def label(self) -> str:
        return f"{self.name} ({self.kind}, step {self.step})"


_info_cache: dict[tuple[Path, float], Experiment] = {}


def describe(folder: Path, name: str) -> Experiment:
    """Read an experiment's conversion checkpoint lazily (torch's loader memory-mapped and with
    weights_only: the tensors are not read), cached by file and modification time.

    Raises: models.base.checkpoint.CheckpointError for no or an unreadable checkpoint.
    """
    import torch

    from models.base.checkpoint import CheckpointError, FORMAT
    file = conversion_checkpoint(folder)
    key = (file, file.stat().st_mtime)
    if key in _info_cache:
        return _info_cache[key]
    try:
        data = torch.load(file, map_location="cpu", weights_only=True, mmap=True)
    except Exception as e:  # torch raises several types for a corrupt or foreign file
        raise CheckpointError(f"{file}: not a readable checkpoint ({type(e).__name__}: {e})") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise CheckpointError(f"{file}: not a Cantor checkpoint (expected format {FORMAT!r})")
    cfg = data["config"]
    inf = cfg.get("inference", {}).get("comosvc", {})
    student = bool(data["student"])
    info = Experiment(
        name=name, folder=folder, file=file, student=student, step=int(data["step"]),
        singers=tuple(sorted(data["singers"])),
        default_steps=int(inf.get("student_inference_steps" if student else "inference_steps", 1)),
        f0_extractor=str(cfg.get("preprocess", {}).get("f0_extractor", "parselmouth")),
        checkpoints=len(list_checkpoints(folder / CHECKPOINT_DIR)),
        exports=len(list_checkpoints(folder / EXPORT_DIR)))
    _info_cache[key] = info
    return info


def find_experiments(sandbox: Sandbox) -> list[Experiment]:
    """Every experiment folder (one holding ``checkpoint/step-*.pt`` or ``export/step-*.pt``) up to
    :data:`MAX_DEPTH` levels below the models folder, sorted by name. Symlinked folders are not
    entered; a checkpoint whose real path leaves the sandbox, or that cannot be read, is skipped
    with a logged warning."""
    root = sandbox.root("models")
    found = []
    for dirpath, dirnames, _ in os.walk(root):
        here = Path(dirpath)
        depth = len(here.relative_to(root).parts)
        dirnames[:] = sorted(d for d in dirnames if not d.startswith(".") and depth < MAX_DEPTH)
        if not (list_checkpoints(here / CHECKPOINT_DIR) or list_checkpoints(here / EXPORT_DIR)):
            continue
        name = here.relative_to(root).as_posix() if here != root else "."
        try:
            file = conversion_checkpoint(here)
            if not sandbox.inside(file):
                log.warning("skipped experiment %s: its checkpoint %s leads outside the models "
                            "folder", name, file)
                continue
            found.append(describe(here, name))
        except ValueError as e:
            log.warning("skipped experiment %s: %s", name, e)
    return sorted(found, key=lambda e: e.name)


def experiment_folder(sandbox: Sandbox, name: str) -> Path:
    """The folder of experiment ``name`` (a path below the models folder).

    Raises: PathRefused outside the sandbox, for a missing folder or a checkpoint that is a
        symlink leading out; CheckpointError for a folder without checkpoint."""
    folder = sandbox.resolve(name, "models", "experiment", kind="dir")
    file = conversion_checkpoint(folder)
    if not sandbox.inside(file):
        raise PathRefused(f"experiment {name!r}: its checkpoint {file} leads outside the folders "
                          f"this UI may use (to {file.resolve()}); allowed: {sandbox.describe()}")
    return folder


_converters: dict[tuple, object] = {}


def load_converter(folder: Path, device: str | None, steps: int | None, f0_extractor: str | None,
                   index_rate: float = 0.0, protect: float | None = None):
    """The converter of an experiment folder (DiffComoSVC or VitsSVC, as its checkpoint says:
    models/svc/registry.py), kept loaded for the next request with the same (checkpoint file,
    device, steps, F0 extractor, index rate, protect); only the newest one is kept.
    ``index_rate`` / ``protect``: inference.index_rate / inference.protect (feature retrieval,
    models/base/retrieval.py; protect None: the config's).

    Raises: as :func:`models.svc.registry.load_converter`.
    """
    from models.svc.registry import load_converter as load
    file = conversion_checkpoint(folder)
    key = (file, file.stat().st_mtime, device, steps, f0_extractor, index_rate, protect)
    if key not in _converters:
        _converters.clear()
        overrides = [f"preprocess.f0_extractor={f0_extractor}"] if f0_extractor else []
        overrides.append(f"inference.index_rate={index_rate}")
        if protect is not None:
            overrides.append(f"inference.protect={protect}")
        _converters[key] = load(folder, device, overrides=overrides, steps=steps)
    return _converters[key]
