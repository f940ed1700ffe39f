"""Stage 2 for VitsSVC: the generator (models/svc/vits/model.py) trained adversarially against the
HiFi-GAN discriminators (models/vocoders/discriminators.py), as VITS and so-vits-svc 4.1 do:

1. discriminator step: the generator's window y_hat (detached) and the real window y,
   least-squares discriminator loss;
2. generator step, against the just-updated discriminator: adversarial + c_fm * feature matching
   + c_mel * mel L1 + c_kl * KL (models/svc/vits/losses.py; weights ``train.vits``), plus
   c_lf0 * the F0 predictor's lf0 error when the model has one.

Both use ``train.adamw`` and ``train.scheduler`` (so-vits-svc: AdamW 1e-4, betas 0.8/0.99, eps 1e-9).
With ``model.vits.decoder_warm_start`` a run from scratch first copies a HiFi-GAN generator's
upsamplers, MRF blocks and output convolution into the decoder (``vocoder.path``).
"""
from __future__ import annotations

import logging

import torch
from torch import nn

from models.base.trainer import BaseTrainer
from models.svc.vits.losses import (discriminator_loss, feature_matching_loss,
                                    generator_adversarial_loss, kl_loss, lf0_loss)
from models.svc.vits.model import VitsSVC
from models.vocoders.discriminators import VitsDiscriminator
from processors.mel import mel_spectrogram
from utils.config import ConfigError
from utils.schema import CantorConfig

log = logging.getLogger(__name__)


class VitsGAN(nn.Module):
    """The trained pair: ``generator`` (:class:`VitsSVC`, exported for conversion) and
    ``discriminator``, with the trainer's model interface (models/base/trainer.py).

    ``loss(batch, part="discriminator")`` runs the generator and keeps its output for the
    following ``loss(batch, part="generator")``; ``loss(batch)`` (validation) runs both afresh.
    """

    def __init__(self, cfg: CantorConfig):
        super().__init__()
        self.generator = VitsSVC(cfg)
        self.discriminator = VitsDiscriminator(max_channels=cfg.model.vits.discriminator_channels)
        self.weights = cfg.train.vits
        self.preprocess = cfg.preprocess
        self._pending: dict | None = None

    def parameter_groups(self) -> dict:
        """The two optimisers' parameters, in the order they are stepped."""
        return {"discriminator": self.discriminator.parameters(),
                "generator": self.generator.parameters()}

    def after_optimizer_step(self) -> None:
        """Nothing to update between steps (no EMA)."""

    def export_state_dict(self) -> dict:
        """The generator's state dict (what conversion loads)."""
        return self.generator.state_dict()

    def loss(self, batch: dict[str, torch.Tensor], part: str | None = None) -> dict[str, torch.Tensor]:
        """Returns: {"loss"} for the discriminator part; for the generator part and validation
        {"loss", "mel", "kl", "adversarial", "feature_matching"} (unweighted components), and
        "lf0" with the F0 predictor.
        Raises: ValueError for an unknown part."""
        if part == "discriminator":
            out = self._pending = self.generator(batch)
            real, fake, _, _ = self.discriminator(out["y"], out["y_hat"].detach())
            return {"loss": discriminator_loss(real, fake)}
        if part not in (None, "generator"):
            raise ValueError(f"unknown optimiser part {part!r}")
        out = self._pending if part == "generator" and self._pending is not None else self.generator(batch)
        self._pending = None
        w = self.weights
        with torch.no_grad():
            mel_real = mel_spectrogram(out["y"][:, 0], self.preprocess)
        mel = torch.mean(torch.abs(mel_spectrogram(out["y_hat"][:, 0], self.preprocess) - mel_real))
        kl = kl_loss(out["z_p"], out["logs_q"], out["m_p"], out["logs_p"], out["mask"])
        _, fake, fmap_real, fmap_fake = self.discriminator(out["y"], out["y_hat"])
        adversarial = generator_adversarial_loss(fake)
        fm = feature_matching_loss(fmap_real, fmap_fake)
        total = adversarial + w.c_fm * fm + w.c_mel * mel + w.c_kl * kl
        parts = {"mel": mel, "kl": kl, "adversarial": adversarial, "feature_matching": fm}
        if "lf0_pred" in out:
            parts["lf0"] = lf0_loss(out["lf0_pred"], out["lf0"], out["mask"])
            total = total + w.c_lf0 * parts["lf0"]
        return {"loss": total, **parts}


class VitsTrainer(BaseTrainer):
    """:class:`BaseTrainer` for VitsSVC (arguments and errors: see BaseTrainer; additionally the
    HiFi-GAN loaders' errors when ``model.vits.decoder_warm_start`` names unusable weights)."""

    def __init__(self, cfg, exp_name, resume=False, resume_from=None, resume_type="resume"):
        if cfg.model_type != "VitsSVC":
            raise ConfigError(f"model_type is {cfg.model_type!r}; VitsTrainer trains VitsSVC")
        if cfg.model.comosvc.distill:
            raise ConfigError("model.comosvc.distill (--distill) applies to DiffComoSVC; VitsSVC "
                              "has no distillation")
        self._from_scratch = not (resume or resume_from)
        super().__init__(cfg, exp_name, resume, resume_from, resume_type)

    def build_model(self) -> VitsGAN:
        model = VitsGAN(self.cfg)
        if self.cfg.model.vits.decoder_warm_start and self._from_scratch:
            self._warm_start(model.generator)
        return model

    def _warm_start(self, generator: VitsSVC) -> None:
        from models.vocoders.formats import hifigan_files
        from models.vocoders.generator import fold_weight_norm, read_generator_state
        from models.vocoders.nsf_hifigan import warm_start_from_hifigan
        if self.cfg.vocoder.type != "hifigan":
            raise ConfigError("model.vits.decoder_warm_start needs vocoder.type hifigan (the "
                              f"generator it copies), not {self.cfg.vocoder.type!r}")
        files = hifigan_files(self.cfg.vocoder.path)
        state = fold_weight_norm({k.removeprefix("module."): v for k, v in
                                  read_generator_state(files.checkpoint, "generator").items()})
        copied = warm_start_from_hifigan(generator.decoder, state)
        log.info("decoder warm-started from %s (%d tensors)", files.checkpoint, len(copied))

    def load_finetune_weights(self, state: dict, path) -> None:
        self._load_state_dict(self.model.generator, state["model"], path)

    def _log_samples(self) -> None:
        """Audio of the first ``train.valid_samples`` test utterances: the real take and its
        reconstruction through the prior (its own singer), with their mel images."""
        if (sampled := self.sample_batch()) is None:
            return
        from models.base.plot import mel_image
        batch, generator = sampled
        n = batch["mask"].shape[0]
        wav = self.model.generator.infer(batch, self.cfg.inference.vits.noise_scale, generator)
        hop, sr = self.cfg.preprocess.hop_size, self.cfg.preprocess.sample_rate
        for i in range(n):
            t = int(batch["mask"][i].sum()) * hop
            pair = {"target": batch["audio"][i, :t], "converted": wav[i, :t]}
            self.writer.add_image(f"valid/mel_{i}/target_converted", mel_image(
                [mel_spectrogram(w.float().cpu(), self.cfg.preprocess).numpy() for w in pair.values()]),
                self.step)
            for name, w in pair.items():
                self.writer.add_audio(f"valid/{name}_{i}", w.clamp(-1, 1).float().cpu()[None],
                                      self.step, sample_rate=sr)
