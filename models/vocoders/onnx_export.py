"""The ONNX export of a vocoder generator, made once and cached.

Layout of the cache (``vocoder.cache_dir``, relative to the project root)::

    <cache_dir>/<kind>-<key[:16]>/vocoder.onnx       the generator, input "mel" (B, n_mel, T),
                                                      output "wav" (B, 1, T * hop); B and T dynamic
    <cache_dir>/<kind>-<key[:16]>/export.json        {"key", "onnx_sha256", "settings", "torch"}
    <cache_dir>/<kind>-<key[:16]>/choice-<machine>.json   backends.py's measurement on a machine

``key`` is the SHA-256 of the generator's weights (every tensor's name, dtype, shape and bytes),
its class, the mel settings and :data:`EXPORT_FORMAT`: other weights or settings get another folder.
A folder whose export.json is missing, unreadable, of another key, or whose vocoder.onnx does not
hash to the recorded SHA-256 (a run killed mid-write, a truncated copy) is rebuilt with a warning.
Both files are written atomically (utils/io.py), the ONNX file first.

The export is torch 2.13's ``torch.onnx.export(dynamo=True)`` (torch.export + onnxscript), with
the weights inside the one file.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import warnings
from pathlib import Path

import torch
from torch import nn

from models.vocoders.formats import MelSettings
from utils.io import atomic_path, load_json, save_json

log = logging.getLogger(__name__)

# Bump when the exported graph changes for the same weights (invalidates every cached export).
EXPORT_FORMAT = 1
ONNX_NAME = "vocoder.onnx"
META_NAME = "export.json"


def generator_key(generator: nn.Module, settings: MelSettings) -> str:
    """SHA-256 (hex) of the generator's state dict (names, dtypes, shapes, bytes, in name order),
    its class name, the mel settings and :data:`EXPORT_FORMAT`."""
    digest = hashlib.sha256()
    header = {"class": type(generator).__name__, "settings": dataclasses.asdict(settings),
              "format": EXPORT_FORMAT}
    digest.update(json.dumps(header, sort_keys=True).encode())
    for name, tensor in sorted(generator.state_dict().items()):
        t = tensor.detach().cpu().contiguous()
        digest.update(f"{name}|{t.dtype}|{tuple(t.shape)}".encode())
        digest.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return digest.hexdigest()


def file_sha256(path: Path) -> str:
    """SHA-256 (hex) of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def cache_folder(cache_dir: Path, kind: str, key: str) -> Path:
    """The folder of one generator's export: ``<cache_dir>/<kind>-<key[:16]>``."""
    return Path(cache_dir) / f"{kind}-{key[:16]}"


def export_onnx(generator: nn.Module, n_mel: int, path: Path) -> None:
    """Write ``generator`` (on CPU, eval mode) as ONNX with dynamic batch and frame axes.

    Args: generator: log-mel (B, n_mel, T) -> waveform (B, 1, T * hop); path: the file to write
        (atomically).
    Raises: whatever torch.onnx.export raises for a graph it cannot export (e.g. onnxscript
        missing: ``pip install onnxscript``).
    """
    example = torch.randn(2, n_mel, 32) - 5.0  # batch 2: keep torch.export from fixing B to 1
    dims = {0: torch.export.Dim("batch", min=1), 2: torch.export.Dim("frames", min=1)}
    # The exporter's notices (torchvision absent, each rewrite pass) are noise here.
    loggers = [logging.getLogger(name) for name in ("torch.onnx", "onnxscript", "onnx_ir")]
    levels = [logger.level for logger in loggers]
    with atomic_path(path) as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for logger in loggers:
            logger.setLevel(logging.ERROR)
        try:
            torch.onnx.export(generator.eval(), (example,), str(tmp), input_names=["mel"],
                              output_names=["wav"], dynamic_shapes=(dims,), dynamo=True,
                              external_data=False, verbose=False)
        finally:
            for logger, level in zip(loggers, levels):
                logger.setLevel(level)


def _cache_problem(folder: Path, key: str) -> str | None:
    """Why the export in ``folder`` cannot be used (None: it can)."""
    onnx_file, meta_file = folder / ONNX_NAME, folder / META_NAME
    if not onnx_file.is_file() and not meta_file.is_file():
        return "absent"
    try:
        meta = load_json(meta_file)
    except (OSError, ValueError) as e:
        return f"{meta_file} unreadable ({type(e).__name__})"
    if not isinstance(meta, dict) or meta.get("key") != key:
        return f"{meta_file} belongs to other weights or settings"
    if not onnx_file.is_file():
        return f"{onnx_file} missing"
    if file_sha256(onnx_file) != meta.get("onnx_sha256"):
        return f"{onnx_file} does not match its recorded SHA-256 (truncated or overwritten)"
    return None


def cached_onnx(generator: nn.Module, settings: MelSettings, kind: str, cache_dir: Path,
                key: str | None = None) -> Path:
    """The ONNX file of ``generator``, exported on first use and reused afterwards.

    Args: generator (CPU); settings: its mel settings (part of the key); kind: "hifigan" or
        "bigvgan" (names the folder); cache_dir: ``vocoder.cache_dir`` resolved; key: a
        precomputed :func:`generator_key`.
    Returns: path of ``vocoder.onnx`` in :func:`cache_folder`.
    Warns: (logging) when a stale or broken export is rebuilt.
    Raises: OSError when the cache folder cannot be written; export errors as :func:`export_onnx`.
    """
    key = key or generator_key(generator, settings)
    folder = cache_folder(cache_dir, kind, key)
    problem = _cache_problem(folder, key)
    if problem is None:
        return folder / ONNX_NAME
    if problem == "absent":
        log.info("exporting the %s vocoder to ONNX once (cache: %s)", kind, folder)
    else:
        log.warning("vocoder ONNX cache %s: %s; rebuilding it", folder, problem)
    onnx_file = folder / ONNX_NAME
    export_onnx(generator, settings.n_mel, onnx_file)
    save_json(folder / META_NAME, {"key": key, "onnx_sha256": file_sha256(onnx_file),
                                   "settings": dataclasses.asdict(settings),
                                   "torch": torch.__version__})
    return onnx_file
