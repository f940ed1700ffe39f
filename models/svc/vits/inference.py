"""VitsSVC's part of stage 3 (the pipeline itself is models/base/converter.py): the generator turns
each batch of chunks straight into audio (prior -> inverse flow with the target singer -> NSF
decoder, ``inference.vits.noise_scale``); there is no separate vocoder."""
from __future__ import annotations

import numpy as np
import torch

from models.base.checkpoint import CheckpointError
from models.base.converter import SVCConverter
from models.svc.vits.model import VitsSVC
from utils.config import ConfigError
from utils.schema import CantorConfig


class VitsConverter(SVCConverter):
    """A trained VitsSVC generator (or an imported so-vits-svc 4.1 one), ready to convert songs.

    Args:
        checkpoint, cfg, device: as :class:`models.base.converter.SVCConverter`.
        steps: must be None (VITS has no sampler steps).
    Raises: CheckpointError when the weights do not fit the checkpoint's config, ConfigError for
        ``steps`` or a CUDA device without a GPU, MissingWeightsError for absent content models.
    """

    model_type = "VitsSVC"

    def __init__(self, checkpoint: dict, cfg: CantorConfig, device: str | torch.device = "cpu",
                 steps: int | None = None):
        if steps is not None:
            raise ConfigError("--steps sets DiffComoSVC's sampler steps; a VitsSVC model has none "
                              "(its sampling temperature is inference.vits.noise_scale)")
        super().__init__(checkpoint, cfg, device)
        self.model = VitsSVC(cfg)
        try:
            self.model.load_state_dict(checkpoint["model"])
        except RuntimeError as e:
            raise CheckpointError(f"the checkpoint's weights do not fit its own config: {e}") from None
        self.model.to(self.device).eval()

    def describe(self) -> str:
        vits = self.cfg.inference.vits
        return (f"VITS generator, noise scale {vits.noise_scale}"
                + (", F0 from its predictor" if vits.predict_f0 else ""))

    def synthesize(self, batch: dict[str, torch.Tensor], singer: str,
                   generator: torch.Generator) -> np.ndarray:
        """(B, T * hop_size) float32 audio of ``batch`` in the voice of ``batch["singer"]``."""
        t1 = self.sync()
        vits = self.cfg.inference.vits
        audio = self.model.infer(batch, vits.noise_scale, generator, vits.predict_f0)
        audio = audio.float().cpu().numpy()
        self.timings.acoustic += self.sync() - t1
        return audio
