"""Stage 2 for DiffComoSVC: the teacher (EDM diffusion) or, with ``model.comosvc.distill``, its
consistency distillation into a one-step student (Lu et al. 2024, CoMoSVC; Song et al. 2023).

Teacher from scratch: ``ComoSVC(cfg)`` with the energy buckets spanning the datasets'
log-energy range (statistics.json); fine-tuning keeps the pretrained model's range (a buffer
of its weights). Distillation from scratch: the teacher's conversion weights are
read from ``model.teacher_model_path`` (a checkpoint file, or an experiment folder -> its newest
checkpoint) into ``ComoSVCDistiller``; a resumed distillation needs no teacher path (its checkpoint
holds the frozen teacher). Checkpoints of a distillation run are marked ``"student": True`` and
come with an export (models/base/checkpoint.py).
"""
from __future__ import annotations

import logging
from pathlib import Path

from models.base.checkpoint import CheckpointError, load_checkpoint, resolve_checkpoint
from models.base.dataset import energy_range
from models.base.trainer import BaseTrainer
from models.svc.comosvc.distiller import build_model
from utils.config import ConfigError
from utils.paths import resolve_path

log = logging.getLogger(__name__)


class ComoSVCTrainer(BaseTrainer):
    """:class:`BaseTrainer` for DiffComoSVC (arguments and errors: see BaseTrainer; additionally
    ConfigError when distilling without ``model.teacher_model_path`` and CheckpointError when that
    path holds no usable teacher)."""

    def __init__(self, cfg, exp_name, resume=False, resume_from=None, resume_type="resume"):
        self.student = cfg.model.comosvc.distill
        self._resuming = resume_type == "resume" and bool(resume or resume_from)
        if self.student and resume_type == "finetune":
            raise ConfigError("--resume_type finetune applies to teacher training; to distil, point "
                              "model.teacher_model_path at the teacher")
        super().__init__(cfg, exp_name, resume, resume_from, resume_type)

    def build_model(self):
        cfg = self.cfg
        if not self.student:
            model = build_model(cfg)
            model.set_energy_range(*energy_range(self.statistics))
            return model
        if self._resuming:
            return build_model(cfg)
        teacher = self._teacher_checkpoint()
        state = load_checkpoint(teacher)
        if state["student"]:
            raise CheckpointError(f"model.teacher_model_path = {teacher} is a distilled student; "
                                  f"distil from a teacher checkpoint")
        if state["singers"] != self.singers:
            raise CheckpointError(f"the teacher {teacher} was trained with another singer table than "
                                  f"{resolve_path(cfg.preprocess.processed_dir) / 'singers.json'}; distil on the "
                                  f"teacher's processed data")
        try:
            model = build_model(cfg, teacher_state_dict=state["model"])
        except RuntimeError as e:
            raise CheckpointError(f"{teacher}: the teacher does not fit the model built from this "
                                  f"config (model.* must match the teacher's): {e}") from None
        log.info("distilling the teacher %s (step %d)", teacher, state["step"])
        return model

    def _teacher_checkpoint(self) -> Path:
        path = self.cfg.model.teacher_model_path
        if not path:
            raise ConfigError("model.comosvc.distill is true but model.teacher_model_path is empty: "
                              "set it to the teacher's checkpoint file or experiment folder")
        return resolve_checkpoint(resolve_path(path), "teacher checkpoint (model.teacher_model_path)")

    def load_finetune_weights(self, state: dict, path: Path) -> None:
        if state["student"]:
            raise CheckpointError(f"{path} is a distilled student; fine-tune from a teacher checkpoint")
        super().load_finetune_weights(state, path)
