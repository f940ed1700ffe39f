"""DiffComoSVC's acoustic model (Lu et al. 2024, "CoMoSVC: Consistency Model-based Singing Voice
Conversion"; Amphion's DiffComoSVC): condition encoder -> relative-position Transformer -> 1x1
projection to the coarse mel mu -> EDM diffusion decoder around mu (edm.py), trained with

    loss = edm_loss_weight * EDM loss + prior_loss_weight * MSE(mu, mel)
           + ssim_loss_weight * (1 - SSIM(mu, mel))                        (all masked)

Model batch (dict of tensors, zero padding): "mel" (B, n_mel, T) normalised to [-1, 1]; "f0" (B, T)
Hz; "uv" (B, T) bool; "energy" (B, T); "singer" (B,) long; one (B, T, D) tensor per name in
``preprocess.content_features``; "mask" (B, T) bool, True = real frame.

The consistency-distillation wrapper around a trained teacher is in distiller.py.
"""
from __future__ import annotations

import torch
from torch import nn

from models.svc.comosvc.consistency import consistency_sample
from models.svc.comosvc.edm import EDM
from models.svc.comosvc.losses import masked_mse, masked_ssim_loss
from modules.diffusion.bidilconv import BiDilConv
from modules.encoder.condition_encoder import ConditionEncoder
from modules.transformer.relative_position_transformer import RelativePositionTransformer
from utils.schema import CantorConfig


class ComoSVC(nn.Module):
    """The DiffComoSVC teacher (and, loaded from a distillation export, the one-step student).

    Args: cfg: the experiment config (model.*, preprocess.n_mel / f0_* / content_features,
        train.*_loss_weight, inference.*).

    Submodules: ``condition_encoder``, ``encoder`` (Transformer), ``mu_proj`` (1x1 projection to
    n_mel), ``decoder`` (the denoiser F of the EDM decoder). Call :meth:`set_energy_range` with
    statistics.json's values before training from scratch.
    """

    def __init__(self, cfg: CantorConfig):
        super().__init__()
        self.cfg = cfg
        como = cfg.model.comosvc
        self.condition_encoder = ConditionEncoder(cfg, como.input_dim)
        self.encoder = RelativePositionTransformer(
            como.input_dim, como.n_layers, como.n_heads, como.filter_channels, como.kernel_size,
            como.dropout, como.window_size)
        self.mu_proj = nn.Conv1d(como.input_dim, como.output_dim, 1)
        self.decoder = BiDilConv(cfg.preprocess.n_mel, como.residual_channels, como.n_res_blocks,
                                 como.dilation_cycle)
        self.edm = EDM.from_config(como)

    def set_energy_range(self, log_energy_min: float, log_energy_max: float) -> None:
        """statistics.json's log_energy_min / log_energy_max (see ConditionEncoder)."""
        self.condition_encoder.set_energy_range(log_energy_min, log_energy_max)

    def encode(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """The coarse mel mu: (B, n_mel, T), zero on padded frames."""
        mask = batch["mask"]
        h = self.encoder(self.condition_encoder(batch), mask)
        return self.mu_proj(h.transpose(1, 2)) * mask[:, None, :].to(h.dtype)

    def loss(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Training losses on a model batch.

        Returns: {"loss": weighted total, "edm_loss", "prior_loss", "ssim_loss"} scalar tensors;
        weights train.edm_loss_weight, prior_loss_weight, ssim_loss_weight.
        """
        mel, mask, train = batch["mel"], batch["mask"], self.cfg.train
        mu = self.encode(batch)
        losses = {
            "edm_loss": self.edm.loss(self.decoder, mel, mu, mask),
            "prior_loss": masked_mse(mu, mel, mask),
            "ssim_loss": masked_ssim_loss(mu, mel, mask),
        }
        losses["loss"] = (train.edm_loss_weight * losses["edm_loss"]
                          + train.prior_loss_weight * losses["prior_loss"]
                          + train.ssim_loss_weight * losses["ssim_loss"])
        return losses

    def trainable_parameters(self):
        """Every parameter (the teacher trains end to end)."""
        return self.parameters()

    def after_optimizer_step(self) -> None:
        """Nothing to do for the teacher (the distiller updates its EMA target here)."""

    @torch.no_grad()
    def sample(self, batch: dict[str, torch.Tensor], steps: int | None = None,
               student: bool = False,
               generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        """Generate mels (call ``.eval()`` first).

        Args:
            batch: a model batch ("mel" is not needed).
            steps: teacher: steps of the inference.comosvc.sampler ODE solver (default
                inference.comosvc.inference_steps; Euler uses ``steps`` network evaluations, Heun
                2 * steps - 1); student: consistency steps, one evaluation each (default
                inference.comosvc.student_inference_steps).
            student: True for a model loaded from a distillation export: consistency sampling.
            generator: for reproducible noise (on the model's device).
        Returns: {"mel": (B, n_mel, T) normalised, "mu": (B, n_mel, T)}, zero on padded frames.
        """
        mu = self.encode(batch)
        inference = self.cfg.inference.comosvc
        if student:
            steps = inference.student_inference_steps if steps is None else steps
            mel = consistency_sample(self.edm, self.decoder, mu, batch["mask"], steps, generator)
        else:
            steps = inference.inference_steps if steps is None else steps
            mel = self.edm.sample(self.decoder, mu, batch["mask"], steps, inference.sampler,
                                  generator)
        return {"mel": mel, "mu": mu}

    def export_state_dict(self) -> dict[str, torch.Tensor]:
        """What conversion needs: the whole state dict."""
        return self.state_dict()


def count_parameters(module: nn.Module, trainable_only: bool = False) -> int:
    """Number of parameter elements of ``module`` (only those with requires_grad if asked)."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable_only)
