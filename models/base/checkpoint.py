"""Stage 2 checkpoints: the one on-disk format that training resumes from and conversion reads.

Files (``EXP`` = ``log_dir/<exp_name>``):

- ``EXP/checkpoint/step-<8-digit step>.pt``: written every ``train.save_every_steps`` optimizer steps
  and at the end; the newest ``train.keep_last`` are kept (0 keeps all).
- ``EXP/export/step-<8-digit step>.pt`` (distillation only, same steps, same keep_last): only what
  conversion needs, the small file a user ships.

Every file is one ``torch.save`` dict holding only tensors and plain containers/numbers/strings, read
back with ``torch.load(weights_only=True)`` (:func:`load_checkpoint`); it is written to a hidden
temporary sibling and renamed into place, so a run killed mid-save never leaves a broken
``step-*.pt``. Integrity: ``"sha256"`` holds :func:`state_digest` of everything else in the file,
checked at load together with the model weights being finite, so flipped bytes or a training that
diverged to NaN is an error naming the file instead of a model that sings noise (and
:func:`save_checkpoint` never writes NaN/inf weights). A file without a digest (none that Cantor
writes) is refused unless the caller trusts it (``--trust-checkpoint``); it then has to pass a
sanity check of its weights instead (finite, ``|w| <=`` :data:`MAX_WEIGHT_MAGNITUDE`). Keys present
in EVERY file (all that conversion reads):

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
(one entry per training process, in process order: its python, numpy, torch CPU and CUDA device
generator states as lists/tensors, see :func:`rng_state` and :func:`process_rng_state`).
"""
from __future__ import annotations

import contextlib
import hashlib
import logging
import random
import re
import warnings
from pathlib import Path

import numpy as np
import torch

from utils.io import atomic_path

log = logging.getLogger(__name__)

FORMAT = "cantor-svc-checkpoint/1"
CHECKPOINT_DIR = "checkpoint"
EXPORT_DIR = "export"
CONVERSION_KEYS = ("format", "student", "model", "config", "singers", "statistics", "step", "epoch")
_NAME = re.compile(r"^step-(\d+)\.pt$")
DIGEST_KEY = "sha256"
BROKEN_SUFFIX = ".broken"
# Largest |weight| a trusted checkpoint without a digest may hold. Trained weights and buffers of
# both models stay within +-100 (embeddings, norm gains, the energy range; AdamW's weight decay
# keeps them small), while random bytes read as float32 exceed 1e4 in nearly every tensor.
MAX_WEIGHT_MAGNITUDE = 1e4


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


def state_digest(state: dict) -> str:
    """SHA-256 (hex) of a checkpoint dict without its ``"sha256"`` entry: every key path, and for
    each leaf its type and value (tensors: dtype, shape and raw bytes), in sorted key order, so two
    dicts with the same contents give the same digest however they were built."""
    h = hashlib.sha256()

    def walk(key: str, value) -> None:
        h.update(key.encode())
        if isinstance(value, torch.Tensor):
            t = value.detach().cpu().contiguous()
            h.update(f"tensor {t.dtype} {tuple(t.shape)}".encode())
            h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
        elif isinstance(value, dict):
            h.update(b"dict")
            for k in sorted(value, key=str):
                walk(f"{key}/{k!s}", value[k])
        elif isinstance(value, (list, tuple)):
            h.update(f"{type(value).__name__} {len(value)}".encode())
            for i, item in enumerate(value):
                walk(f"{key}[{i}]", item)
        else:
            h.update(f"{type(value).__name__} {value!r}".encode())

    walk("", {k: v for k, v in state.items() if k != DIGEST_KEY})
    return h.hexdigest()


def _non_finite_weight(data: dict) -> str | None:
    """Key path of the first NaN/inf weight of ``data["model"]`` or ``data["training"]["model"]``."""
    weights = {"model": data.get("model", {})}
    if isinstance(data.get("training"), dict) and isinstance(data["training"].get("model"), dict):
        weights["training.model"] = data["training"]["model"]
    return _non_finite_tensor(weights)


def _non_finite_tensor(state: dict, prefix: str = "") -> str | None:
    """Key path of the first floating-point tensor below ``state`` holding NaN or inf, or None."""
    for key, value in state.items():
        name = f"{prefix}{key}"
        if isinstance(value, torch.Tensor):
            if value.is_floating_point() and not bool(torch.isfinite(value).all()):
                return name
        elif isinstance(value, dict):
            found = _non_finite_tensor(value, f"{name}.")
            if found:
                return found
    return None


def _oversized_weight(state: dict, prefix: str = "") -> tuple[str, float] | None:
    """(key path, max |w|) of the first floating-point tensor below ``state`` whose magnitude
    exceeds :data:`MAX_WEIGHT_MAGNITUDE`, or None."""
    for key, value in state.items():
        name = f"{prefix}{key}"
        if isinstance(value, torch.Tensor):
            if value.is_floating_point() and value.numel():
                peak = float(value.detach().abs().max())
                if peak > MAX_WEIGHT_MAGNITUDE:
                    return name, peak
        elif isinstance(value, dict):
            found = _oversized_weight(value, f"{name}.")
            if found:
                return found
    return None


def _load_failure(error: Exception) -> str:
    """Why ``torch.load`` failed, in one line, without torch's advice to load the file with
    ``weights_only=False`` (which would run whatever code a pickle holds)."""
    text = str(error)
    if "Weights only load failed" in text:
        found = re.search(r"WeightsUnpickler error:\s*(\S[^\n]*)", text)
        detail = f": {found.group(1).strip()}" if found else ""
        return f"its index is corrupt or holds objects other than tensors and plain data{detail}"
    lines = text.strip().splitlines()
    return f"{type(error).__name__}: {lines[0]}" if lines else type(error).__name__


def load_checkpoint(path: str | Path, trust: bool = False) -> dict:
    """Read a checkpoint file to CPU with ``torch.load(weights_only=True)`` and check it: its
    format, the conversion keys, its ``"sha256"`` digest and that every weight of ``"model"``
    (and of the resume state's ``"training"/"model"``) is finite.

    Args:
        trust: accept a file without a digest (``--trust-checkpoint``): its weights must then also
            lie within +-:data:`MAX_WEIGHT_MAGNITUDE` (a warning says it was not verified).
    Returns: the dict described in the module doc.
    Raises:
        CheckpointError: unreadable file, not a Cantor checkpoint, a conversion key missing, no
            digest (unless ``trust``), a digest mismatch (the file was corrupted after it was
            written), NaN/inf weights (a diverged training) or, for a trusted file, weights
            beyond what training produces; each message is one line naming the file.
    """
    path = Path(path)
    try:
        with warnings.catch_warnings():  # torch warns about the pickle protocol of a corrupt file
            warnings.simplefilter("ignore")
            data = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise CheckpointError(f"checkpoint not found: {path}") from None
    except Exception as e:  # torch raises several types for a corrupt or foreign file
        raise CheckpointError(f"{path}: not a readable checkpoint ({_load_failure(e)}); use "
                              f"another checkpoint") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        found = data.get("format") if isinstance(data, dict) else type(data).__name__
        raise CheckpointError(f"{path}: not a Cantor checkpoint (format {found!r}, expected {FORMAT!r})")
    missing = [k for k in CONVERSION_KEYS if k not in data]
    if missing:
        raise CheckpointError(f"{path}: checkpoint lacks {', '.join(missing)}")
    if DIGEST_KEY not in data and not trust:
        raise CheckpointError(f"{path}: no SHA-256 digest (every checkpoint Cantor writes has one), "
                              f"so a corruption cannot be detected; if you trust this file, pass "
                              f"--trust-checkpoint (or set inference.trust_checkpoint = true)")
    if DIGEST_KEY in data and state_digest(data) != data[DIGEST_KEY]:
        raise CheckpointError(f"{path}: corrupt checkpoint (its SHA-256 no longer matches the one "
                              f"stored when it was written); use another checkpoint")
    bad = _non_finite_weight(data)
    if bad:
        raise CheckpointError(f"{path}: weight {bad} holds NaN or inf (the training diverged, or "
                              f"the file is corrupt); use an earlier checkpoint")
    if DIGEST_KEY not in data:
        oversized = _oversized_weight({"model": data["model"]})
        if oversized:
            raise CheckpointError(f"{path}: weight {oversized[0]} reaches |w| = {oversized[1]:.3g}, "
                                  f"beyond the {MAX_WEIGHT_MAGNITUDE:g} that training produces "
                                  f"(the file holds garbage); use another checkpoint")
        log.warning("%s has no SHA-256 digest; loaded because it is trusted (--trust-checkpoint), "
                    "its weights are finite and within +-%g", path, MAX_WEIGHT_MAGNITUDE)
    return data


def resume_checkpoint(exp_dir: str | Path) -> tuple[Path, dict] | None:
    """The newest checkpoint of ``exp_dir/checkpoint`` that :func:`load_checkpoint` accepts, and
    its contents; None when the folder holds no ``step-*.pt``.

    Each newer file that fails to load is logged as a warning naming it and the reason, and renamed
    to ``<name>.broken`` (kept for inspection, no longer a ``step-*.pt``, so neither pruning nor
    stage 3 takes it for the newest).

    Raises:
        CheckpointError: every checkpoint is broken (the message lists them).
    """
    exp_dir = Path(exp_dir)
    folder = exp_dir if exp_dir.name == CHECKPOINT_DIR else exp_dir / CHECKPOINT_DIR
    found = list_checkpoints(folder)
    if not found:
        return None
    broken = []
    for path in reversed(found):
        try:
            return path, load_checkpoint(path)
        except CheckpointError as e:
            with contextlib.suppress(FileNotFoundError):  # another process may have moved it
                path.rename(path.with_name(path.name + BROKEN_SUFFIX))
            log.warning("--resume: %s; renamed it to %s%s and trying the previous checkpoint",
                        e, path.name, BROKEN_SUFFIX)
            broken.append(path.name)
    raise CheckpointError(f"--resume: every checkpoint in {folder} is broken "
                          f"({', '.join(broken)}, now *{BROKEN_SUFFIX})")


def save_checkpoint(folder: str | Path, step: int, payload: dict, keep_last: int) -> Path:
    """Atomically write ``payload`` with its ``"sha256"`` digest (:func:`state_digest`) to
    ``folder/step-<step>.pt``, then delete the oldest ``step-*.pt`` beyond ``keep_last`` (0 keeps
    all) and temporary files left by killed saves.

    Returns: the written path.
    Raises: CheckpointError (nothing written, nothing pruned) if a weight of ``payload["model"]``
        or ``payload["training"]["model"]`` holds NaN or inf: a diverged training keeps its last
        good checkpoints.
    """
    folder = Path(folder)
    path = folder / checkpoint_name(step)
    bad = _non_finite_weight(payload)
    if bad:
        raise CheckpointError(f"step {step}: weight {bad} holds NaN or inf (the training diverged); "
                              f"{path} not written, the checkpoints before it are kept")
    for stale in folder.glob(".step-*.tmp"):
        with contextlib.suppress(FileNotFoundError):
            stale.unlink()
    payload = {**payload, DIGEST_KEY: state_digest(payload)}
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)
    if keep_last > 0:
        for old in list_checkpoints(folder)[:-keep_last]:
            old.unlink()
    return path


def rng_state(device: torch.device | None = None) -> dict:
    """Python, numpy and torch CPU generator states, and that of the CUDA ``device`` when it is
    one, as lists and tensors so that ``torch.load(weights_only=True)`` reads them back."""
    version, mt, gauss = random.getstate()
    _, keys, pos, has_gauss, cached = np.random.get_state()
    state = {"python": [version, list(mt), gauss],
             "numpy": [keys.tolist(), int(pos), int(has_gauss), float(cached)],
             "torch": torch.get_rng_state()}
    if device is not None and device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def set_rng_state(state: dict, device: torch.device | None = None) -> None:
    """Restore what :func:`rng_state` captured (the CUDA state only onto a CUDA ``device``)."""
    version, mt, gauss = state["python"]
    random.setstate((version, tuple(mt), gauss))
    keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state(("MT19937", np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and device is not None and device.type == "cuda":
        torch.cuda.set_rng_state(state["cuda"], device)


def process_rng_state(states: list[dict] | dict, index: int, count: int) -> dict | None:
    """The generator states of training process ``index`` of ``count`` from a checkpoint's
    ``"training"/"rng"`` (one per process; a single dict in checkpoints of older versions).

    Returns: that process's :func:`rng_state` dict, or None when the checkpoint was written by a
    different number of processes (each process's streams cannot then be continued).
    """
    states = [states] if isinstance(states, dict) else list(states)
    return states[index] if len(states) == count else None
