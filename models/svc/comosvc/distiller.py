"""The distillation model of DiffComoSVC: a frozen trained teacher (condition encoder, encoder and
EDM decoder), a student decoder trained with the consistency-distillation loss, and its EMA target
(the maths is in consistency.py; Song et al. 2023, Algorithm 2).

:func:`build_model` gives the trainer's model: the ComoSVC teacher, or this wrapper when
``model.comosvc.distill`` is set.
"""
from __future__ import annotations

import copy

import torch
from torch import nn

from models.svc.comosvc.consistency import (consistency_distillation_terms, consistency_sample,
                                            ema_update)
from models.svc.comosvc.model import ComoSVC
from utils.config import ConfigError
from utils.schema import CantorConfig


class ComoSVCDistiller(nn.Module):
    """Consistency distillation of a trained ComoSVC teacher (the trainer's model when
    ``model.comosvc.distill`` is true).

    Holds the teacher (condition encoder, encoder and decoder, frozen, always in eval mode; Amphion
    leaves the encoder's dropout on), the student decoder (trainable, initialised from the
    teacher's) and the target decoder (EMA of the student, frozen). Implements the trainer
    interface of ComoSVC: loss (also as forward), trainable_parameters, after_optimizer_step,
    sample, export_state_dict. Its state dict (resuming) holds all three decoders; the export
    (conversion) only the teacher's encoders and the target decoder.
    """

    def __init__(self, teacher: ComoSVC):
        super().__init__()
        self.cfg = teacher.cfg
        self.edm = teacher.edm
        self.teacher = teacher.requires_grad_(False)
        self.student = copy.deepcopy(teacher.decoder).requires_grad_(True)
        self.target = copy.deepcopy(teacher.decoder).requires_grad_(False)
        self.train()

    def train(self, mode: bool = True) -> ComoSVCDistiller:
        """Only the student follows ``mode``; the teacher and the target stay in eval mode."""
        super().train(mode)
        self.teacher.eval()
        self.target.eval()
        return self

    def load_teacher_state_dict(self, state_dict: dict) -> None:
        """Load a ComoSVC (teacher) state dict and restart student and target from its decoder."""
        self.teacher.load_state_dict(state_dict)
        self.student.load_state_dict(self.teacher.decoder.state_dict())
        self.target.load_state_dict(self.teacher.decoder.state_dict())

    def loss(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """{"loss", "consistency_loss"} (the same scalar) on a model batch (see ComoSVC.loss),
        and "predicted": {"student": the student's clean-mel estimate (B, n_mel, T)} for the
        trainer's content-consistency loss."""
        with torch.no_grad():
            mu = self.teacher.encode(batch)
        loss, pred = consistency_distillation_terms(
            self.edm, self.student, self.target, self.teacher.decoder, batch["mel"], mu,
            batch["mask"], self.cfg.model.comosvc.n_timesteps)
        return {"loss": loss, "consistency_loss": loss, "predicted": {"student": pred}}

    def trainable_parameters(self):
        """The student decoder's parameters."""
        return self.student.parameters()

    def clip_groups(self) -> dict[str, list[nn.Parameter]]:
        """One clipping group, the student decoder (the only trained part)."""
        return {"decoder": list(self.student.parameters())}

    def after_optimizer_step(self) -> None:
        """EMA update of the target from the student (call once after each optimizer step)."""
        ema_update(self.target, self.student, self.cfg.model.comosvc.ema_decay)

    @torch.no_grad()
    def sample(self, batch: dict[str, torch.Tensor], steps: int | None = None,
               generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        """Consistency sampling with the target network.

        Args: batch as for ComoSVC.sample; steps (default inference.comosvc.student_inference_steps).
        Returns: {"mel", "mu"} (B, n_mel, T) normalised, zero on padded frames.
        """
        mu = self.teacher.encode(batch)
        steps = self.cfg.inference.comosvc.student_inference_steps if steps is None else steps
        mel = consistency_sample(self.edm, self.target, mu, batch["mask"], steps, generator,
                                 self.cfg.inference.comosvc.shallow_sigma or None)
        return {"mel": mel, "mu": mu}

    def export_state_dict(self) -> dict[str, torch.Tensor]:
        """A ComoSVC state dict whose decoder is the target network: what conversion needs (load
        it into ComoSVC and sample with ``student=True``)."""
        state = {k: v for k, v in self.teacher.state_dict().items() if not k.startswith("decoder.")}
        state.update({f"decoder.{k}": v for k, v in self.target.state_dict().items()})
        return state


def build_model(cfg: CantorConfig,
                teacher_state_dict: dict | None = None) -> ComoSVC | ComoSVCDistiller:
    """The trainer's model for ``cfg``.

    Args:
        cfg: experiment config; ``model.comosvc.distill`` selects distillation.
        teacher_state_dict: distillation only: the trained teacher's ComoSVC state dict (its
            export); student and target start from its decoder. Leave it None when a full
            distiller state dict (a resumed run) is loaded next.
    Returns: ComoSVC (teacher, with a weight EMA when model.comosvc.teacher_ema_decay > 0) or
        ComoSVCDistiller.
    Raises: ConfigError for invalid settings or a teacher_state_dict without distill.
    """
    model = ComoSVC(cfg, weight_ema=not cfg.model.comosvc.distill)
    if not cfg.model.comosvc.distill:
        if teacher_state_dict is not None:
            raise ConfigError("a teacher state dict was given but model.comosvc.distill is false")
        return model
    distiller = ComoSVCDistiller(model)
    if teacher_state_dict is not None:
        distiller.load_teacher_state_dict(teacher_state_dict)
    return distiller
