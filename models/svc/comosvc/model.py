"""DiffComoSVC's acoustic model (Lu et al. 2024, "CoMoSVC: Consistency Model-based Singing Voice
Conversion"; Amphion's DiffComoSVC): condition encoder -> relative-position Transformer -> 1x1
projection to the coarse mel mu -> EDM diffusion decoder around mu (edm.py), trained with

    loss = edm_loss_weight * EDM loss + prior_loss_weight * prior(mu, mel)
           + ssim_loss_weight * (1 - SSIM(mu, mel))                        (all masked)

(prior and SSIM in the forms train.prior_loss_form / train.ssim_form, see losses.py; Amphion's by
default).

Model batch (dict of tensors, zero padding): "mel" (B, n_mel, T) normalised to [-1, 1]; "f0" (B, T)
Hz; "uv" (B, T) bool; "energy" (B, T); "singer" (B,) long; one (B, T, D) tensor per name in
``preprocess.content_features``; "mask" (B, T) bool, True = real frame.

The consistency-distillation wrapper around a trained teacher is in distiller.py.
"""
from __future__ import annotations

import copy

import torch
from torch import nn

from models.svc.comosvc.consistency import consistency_sample, ema_update
from models.svc.comosvc.edm import EDM
from models.svc.comosvc.losses import masked_ssim_loss, prior_loss
from modules.diffusion.bidilconv import BiDilConv
from modules.encoder.condition_encoder import ConditionEncoder
from modules.transformer.relative_position_transformer import RelativePositionTransformer
from utils.schema import CantorConfig


class ComoSVC(nn.Module):
    """The DiffComoSVC teacher (and, loaded from a distillation export, the one-step student).

    Args:
        cfg: the experiment config (model.*, preprocess.n_mel / f0_* / content_features,
            train.*_loss_weight, inference.*).
        weight_ema: keep an exponential moving average of the weights when
            ``model.comosvc.teacher_ema_decay`` > 0 (the teacher's trainer sets it): updated after
            every optimizer step, saved in training checkpoints, and what :meth:`export_state_dict`
            gives conversion and distillation (as the EMA models of Ho et al. 2020 and Karras et
            al. 2022). A model built without it is a plain ComoSVC.

    Submodules: ``condition_encoder``, ``encoder`` (Transformer), ``mu_proj`` (1x1 projection to
    n_mel), ``decoder`` (the denoiser F of the EDM decoder). Call :meth:`set_energy_range` with
    statistics.json's values before training from scratch.
    """

    #: The submodules whose weights the optional weight EMA averages (all of them).
    EMA_MODULES = ("condition_encoder", "encoder", "mu_proj", "decoder")

    def __init__(self, cfg: CantorConfig, weight_ema: bool = False):
        super().__init__()
        self.cfg = cfg
        como = cfg.model.comosvc
        self.condition_encoder = ConditionEncoder(cfg, como.input_dim)
        self.encoder = RelativePositionTransformer(
            como.input_dim, como.n_layers, como.n_heads, como.filter_channels, como.kernel_size,
            como.dropout, como.window_size)
        self.mu_proj = nn.Conv1d(como.input_dim, como.output_dim, 1)
        self.decoder = BiDilConv(cfg.preprocess.n_mel, como.residual_channels, como.n_res_blocks,
                                 como.dilation_cycle, init=como.decoder_init)
        self.edm = EDM.from_config(como)
        self.weight_ema = None
        if weight_ema and como.teacher_ema_decay > 0:
            self.weight_ema = nn.ModuleDict({name: copy.deepcopy(getattr(self, name))
                                             for name in self.EMA_MODULES}).requires_grad_(False)

    def set_energy_range(self, log_energy_min: float, log_energy_max: float) -> None:
        """statistics.json's log_energy_min / log_energy_max (see ConditionEncoder); the weight
        EMA's copy too."""
        self.condition_encoder.set_energy_range(log_energy_min, log_energy_max)
        if self.weight_ema is not None:
            self.weight_ema["condition_encoder"].set_energy_range(log_energy_min, log_energy_max)

    def encode(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """The coarse mel mu: (B, n_mel, T), zero on padded frames."""
        mask = batch["mask"]
        h = self.encoder(self.condition_encoder(batch), mask)
        return self.mu_proj(h.transpose(1, 2)) * mask[:, None, :].to(h.dtype)

    def loss(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Training losses on a model batch.

        Returns: {"loss": weighted total, "edm_loss", "prior_loss", "ssim_loss"} scalar tensors;
        weights train.edm_loss_weight, prior_loss_weight, ssim_loss_weight; and "predicted":
        {"mu": mu, "denoised": the EDM loss's D(x; sigma)} (B, n_mel, T) for the trainer's
        content-consistency loss ("denoised" only with ``train.content_loss.denoised``).
        """
        mel, mask, train = batch["mel"], batch["mask"], self.cfg.train
        mu = self.encode(batch)
        edm_loss, denoised = self.edm.loss_and_denoised(self.decoder, mel, mu, mask)
        losses = {
            "edm_loss": edm_loss,
            "prior_loss": prior_loss(mu, mel, mask, train.prior_loss_form),
            "ssim_loss": masked_ssim_loss(mu, mel, mask, train.ssim_form),
        }
        losses["loss"] = (train.edm_loss_weight * losses["edm_loss"]
                          + train.prior_loss_weight * losses["prior_loss"]
                          + train.ssim_loss_weight * losses["ssim_loss"])
        losses["predicted"] = ({"mu": mu, "denoised": denoised} if train.content_loss.denoised
                               else {"mu": mu})
        return losses

    def trainable_parameters(self):
        """Every parameter but the weight EMA's (the teacher trains end to end)."""
        return [p for name, p in self.named_parameters() if not name.startswith("weight_ema.")]

    def train(self, mode: bool = True) -> "ComoSVC":
        """As nn.Module.train; the weight EMA stays in eval mode."""
        super().train(mode)
        if self.weight_ema is not None:
            self.weight_ema.eval()
        return self

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):
        """As nn.Module.load_state_dict; a plain ComoSVC state dict (an export) loaded into a model
        with a weight EMA also restarts the EMA from the loaded weights (fine-tuning)."""
        if self.weight_ema is None or any(k.startswith("weight_ema.") for k in state_dict):
            return super().load_state_dict(state_dict, strict, assign)
        ema, self.weight_ema = self.weight_ema, None
        try:
            result = super().load_state_dict(state_dict, strict, assign)
        finally:
            self.weight_ema = ema
        for name in self.EMA_MODULES:
            ema[name].load_state_dict(getattr(self, name).state_dict())
        return result

    def clip_groups(self) -> dict[str, list[nn.Parameter]]:
        """The parameter groups whose gradient norms are clipped separately with
        ``train.grad_clip_scope`` per_module (Amphion's comosvc_trainer.py): "encoder" (the
        Transformer and its mu projection) and "decoder"; the condition encoder is left unclipped."""
        return {"encoder": [*self.encoder.parameters(), *self.mu_proj.parameters()],
                "decoder": list(self.decoder.parameters())}

    def after_optimizer_step(self) -> None:
        """Update the weight EMA, if any (the distiller updates its EMA target here)."""
        if self.weight_ema is not None:
            for name in self.EMA_MODULES:
                ema_update(self.weight_ema[name], getattr(self, name),
                           self.cfg.model.comosvc.teacher_ema_decay)

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
                0 steps (either kind): no sampling, "mel" is the coarse mel mu itself, the control
                a sampler has to beat.
            student: True for a model loaded from a distillation export: consistency sampling.
            Both start at inference.comosvc.shallow_sigma when it is set (shallow diffusion from
            the noised mu, edm.py), else at sigma_max.
            generator: for reproducible noise (on the model's device).
        Returns: {"mel": (B, n_mel, T) normalised, "mu": (B, n_mel, T)}, zero on padded frames.
        """
        mu = self.encode(batch)
        inference = self.cfg.inference.comosvc
        start = inference.shallow_sigma or None
        if steps is None:
            steps = inference.student_inference_steps if student else inference.inference_steps
        if steps == 0:
            mel = mu.to(torch.promote_types(mu.dtype, torch.float32))
        elif student:
            mel = consistency_sample(self.edm, self.decoder, mu, batch["mask"], steps, generator,
                                     start)
        else:
            mel = self.edm.sample(self.decoder, mu, batch["mask"], steps, inference.sampler,
                                  generator, start)
        return {"mel": mel, "mu": mu}

    def export_state_dict(self) -> dict[str, torch.Tensor]:
        """What conversion needs: a plain ComoSVC state dict, with the weight EMA's values when the
        model keeps one."""
        if self.weight_ema is None:
            return self.state_dict()
        return {f"{name}.{k}": v for name in self.EMA_MODULES
                for k, v in self.weight_ema[name].state_dict().items()}


def count_parameters(module: nn.Module, trainable_only: bool = False) -> int:
    """Number of parameter elements of ``module`` (only those with requires_grad if asked)."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable_only)
