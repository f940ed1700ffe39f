"""Which classes train and convert each ``model_type`` (utils/schema.py), and the one loader that
stage 3, ``cantor infer`` and the benchmarks use for any experiment: a Cantor checkpoint of either
model (its config says which), or a so-vits-svc 4.1 ``G_*.pth`` with its ``config.json``
(models/svc/vits/sovits_format.py)."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

from models.base.checkpoint import conversion_checkpoint, load_checkpoint
from models.base.converter import SVCConverter
from utils.schema import CantorConfig


def trainer_class(model_type: str):
    """The stage 2 trainer class of ``model_type`` ("DiffComoSVC" or "VitsSVC")."""
    if model_type == "VitsSVC":
        from models.svc.vits.trainer import VitsTrainer
        return VitsTrainer
    from models.svc.comosvc.trainer import ComoSVCTrainer
    return ComoSVCTrainer


def converter_class(model_type: str) -> type[SVCConverter]:
    """The stage 3 converter class of ``model_type``."""
    if model_type == "VitsSVC":
        from models.svc.vits.inference import VitsConverter
        return VitsConverter
    from models.svc.comosvc.inference import ComoSVCConverter
    return ComoSVCConverter


def load_converter(path: str | Path, device: str | None = None,
                   user_config: CantorConfig | None = None, overrides: Sequence[str] = (),
                   steps: int | None = None, trust: bool = False) -> SVCConverter:
    """The converter of an experiment folder or checkpoint file, of whichever model it holds.

    A ``.pth`` file that is not a Cantor checkpoint is read as a so-vits-svc 4.1 generator with the
    ``config.json`` beside it. ``trust``: accept a Cantor checkpoint without a digest
    (:func:`models.base.checkpoint.load_checkpoint`).
    Raises: models.base.checkpoint.CheckpointError (no, unreadable or unsupported checkpoint),
        and as :meth:`SVCConverter.from_checkpoint`.
    """
    path = Path(path)
    if path.is_file() and path.suffix == ".pth":
        from models.svc.vits.sovits_format import is_sovits_checkpoint, read_sovits
        if is_sovits_checkpoint(path):
            checkpoint = read_sovits(path)
            return converter_class("VitsSVC").from_checkpoint(path, checkpoint, device,
                                                              user_config, overrides, steps)
    file = conversion_checkpoint(path)
    checkpoint = load_checkpoint(file, trust)
    cls = converter_class(checkpoint["config"].get("model_type", "DiffComoSVC"))
    return cls.from_checkpoint(file, checkpoint, device, user_config, overrides, steps)
