"""Stage 2 checkpoints: the one on-disk format that training resumes from and conversion reads.

Files (``EXP`` = ``log_dir/<exp_name>``):

- ``EXP/checkpoint/step-<8-digit step>.pt``: written every ``train.save_every_steps`` optimizer steps
  and at the end; the newest ``train.keep_last`` are kept (0 keeps all).
- ``EXP/export/step-<8-digit step>.pt`` (distillation only, same steps, same keep_last): only what
  conversion needs, the small file a user ships.

Every file is one ``torch.save`` dict holding only tensors and plain containers/numbers/strings, read
back with ``torch.load(weights_only=True)`` (:func:`load_checkpoint`); it is written to a hidden
temporary sibling and renamed into place, so a run killed mid-save never leaves a broken
``step-*.pt``. Keys present in EVERY file (all that conversion reads):

- ``"format"``: :data:`FORMAT`.
- ``"student"``: bool. False: ``"model"`` is a diffusion teacher (sample with the EDM sampler,
  ``inference.comosvc.inference_steps``); True: a consistency-distilled student (``ComoSVC.sample(...,
  student=True)``, ``inference.comosvc.student_inference_steps``).
- ``"model"``: ``ComoSVC(config)`` state dict (``export_state_dict()``; for a student its decoder is
  the EMA target decoder), loadable into a freshly built ``models.svc.comosvc.model.ComoSVC``.
- ``"config"``: the merged config as a plain dict (``utils.config.config_from_dict`` rebuilds it).
- ``"singers"``: the global singer table (``singers.json``), {"<dataset>_<singer>": id}.
- ``"statistics"``: {dataset name: that dataset's ``statistics.json``} (mel_min/mel_max to
  de-normalise mels, per-singer F0 statistics for autoshift).
- ``"step"``, ``"epoch"``: ints, optimizer steps and completed epochs.

Only in ``checkpoint/`` files, ``"training"`` (resume state): ``"model"`` (state dict of the trained
module: the teacher ComoSVC, or the distiller with student, target and frozen teacher parts; tensors
shared with ``"model"`` above are stored once), ``"optimizer"`` and ``"scheduler"`` ({name: state
dict}, one per optimiser: "model" for DiffComoSVC, "discriminator" and "generator" for VitsSVC), ``"scaler"`` (fp16
only), ``"batches_done"`` (micro-batches of the current epoch already consumed) and ``"rng"``
(python, numpy, torch CPU and CUDA generator states as lists/tensors, see :func:`rng_state`).
"""
from __future__ import annotations

import contextlib
import random
import re
from pathlib import Path

import numpy as np
import torch

from utils.io import atomic_path

FORMAT = "cantor-svc-checkpoint/1"
CHECKPOINT_DIR = "checkpoint"
EXPORT_DIR = "export"
CONVERSION_KEYS = ("format", "student", "model", "config", "singers", "statistics", "step", "epoch")
_NAME = re.compile(r"^step-(\d+)\.pt$")


class CheckpointError(ValueError):
    """A checkpoint path or file that cannot be used; the message names it and says why."""


def checkpoint_name(step: int) -> str:
    return f"step-{step:08d}.pt"


def list_checkpoints(folder: str | Path) -> list[Path]:
    """``step-*.pt`` files in ``folder``, oldest step first (temporary files of a killed save are
    not listed); [] when the folder does not exist."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in folder.iterdir() if (m := _NAME.match(p.name))]
    return [p for _, p in sorted(found)]


def latest_checkpoint(exp_dir: str | Path) -> Path | None:
    """The newest resume checkpoint ``exp_dir/checkpoint/step-*.pt`` (highest step), or None.

    ``exp_dir`` may also be the ``checkpoint`` folder itself. Every such file also holds the
    conversion keys (module doc), so stage 3 can use it as well."""
    exp_dir = Path(exp_dir)
    folder = exp_dir if exp_dir.name == CHECKPOINT_DIR else exp_dir / CHECKPOINT_DIR
    found = list_checkpoints(folder)
    return found[-1] if found else None


def latest_export(exp_dir: str | Path) -> Path | None:
    """The newest export ``exp_dir/export/step-*.pt`` (distillation experiments), or None."""
    found = list_checkpoints(Path(exp_dir) / EXPORT_DIR)
    return found[-1] if found else None


def resolve_checkpoint(path: str | Path, what: str = "checkpoint") -> Path:
    """A checkpoint file from a file or experiment-folder path (folder -> :func:`latest_checkpoint`).

    Raises:
        CheckpointError: the path does not exist or the folder holds no checkpoint.
    """
    path = Path(path)
    if path.is_file():
        return path
    if not path.exists():
        raise CheckpointError(f"{what} not found: {path}")
    found = latest_checkpoint(path)
    if found is None:
        raise CheckpointError(f"no {what} in {path}: expected {path / CHECKPOINT_DIR}/step-*.pt "
                              f"(written by stage 2 training)")
    return found


def conversion_checkpoint(path: str | Path) -> Path:
    """The file stage 3 should load for ``path``: a file as is; for an experiment folder its newest
    export when it has one (distilled student), else its newest checkpoint.

    Raises:
        CheckpointError: as :func:`resolve_checkpoint`.
    """
    path = Path(path)
    if path.is_dir():
        export = latest_export(path)
        if export is not None:
            return export
    return resolve_checkpoint(path)


def load_checkpoint(path: str | Path) -> dict:
    """Read a checkpoint file to CPU with ``torch.load(weights_only=True)`` and check its format.

    Returns: the dict described in the module doc.
    Raises:
        CheckpointError: unreadable file, not a Cantor checkpoint, or a conversion key missing.
    """
    path = Path(path)
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise CheckpointError(f"checkpoint not found: {path}") from None
    except Exception as e:  # torch raises several types for a corrupt or foreign file
        raise CheckpointError(f"{path}: not a readable checkpoint ({type(e).__name__}: {e})") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        found = data.get("format") if isinstance(data, dict) else type(data).__name__
        raise CheckpointError(f"{path}: not a Cantor checkpoint (format {found!r}, expected {FORMAT!r})")
    missing = [k for k in CONVERSION_KEYS if k not in data]
    if missing:
        raise CheckpointError(f"{path}: checkpoint lacks {', '.join(missing)}")
    return data


def save_checkpoint(folder: str | Path, step: int, payload: dict, keep_last: int) -> Path:
    """Atomically write ``payload`` to ``folder/step-<step>.pt``, then delete the oldest
    ``step-*.pt`` beyond ``keep_last`` (0 keeps all) and temporary files left by killed saves.

    Returns: the written path.
    """
    folder = Path(folder)
    path = folder / checkpoint_name(step)
    for stale in folder.glob(".step-*.tmp"):
        with contextlib.suppress(FileNotFoundError):
            stale.unlink()
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)
    if keep_last > 0:
        for old in list_checkpoints(folder)[:-keep_last]:
            old.unlink()
    return path


def rng_state() -> dict:
    """Python, numpy and torch (CPU, every CUDA device) generator states, as lists and tensors so
    that ``torch.load(weights_only=True)`` reads them back."""
    version, mt, gauss = random.getstate()
    _, keys, pos, has_gauss, cached = np.random.get_state()
    state = {"python": [version, list(mt), gauss],
             "numpy": [keys.tolist(), int(pos), int(has_gauss), float(cached)],
             "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    """Restore what :func:`rng_state` captured (CUDA states only where CUDA is available)."""
    version, mt, gauss = state["python"]
    random.setstate((version, tuple(mt), gauss))
    keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state(("MT19937", np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
