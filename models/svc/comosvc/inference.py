"""DiffComoSVC's part of stage 3 (the pipeline itself is models/base/converter.py): the acoustic
model samples normalised mels (teacher: EDM sampler, ``inference.comosvc.inference_steps``; student:
consistency sampling, ``inference.comosvc.student_inference_steps``), which are de-normalised with
the target singer's dataset statistics (per-bin mel_min/mel_max) and vocoded."""
from __future__ import annotations

import numpy as np
import torch

from models.base.checkpoint import CheckpointError
from models.base.converter import SVCConverter
from models.base.dataset import denormalize_mel
from processors.mel import LOG_CLAMP
from utils.config import ConfigError
from utils.schema import CantorConfig

# Mel frames before a vocoded tail whose audio is generated and dropped: the first samples HiFi-GAN
# makes from a cut mel differ from the whole mel's (its receptive field spans several frames). The
# error left by each context length is in README.md, "Realtime conversion".
VOCODER_CONTEXT_FRAMES = 8


class ComoSVCConverter(SVCConverter):
    """A DiffComoSVC teacher or consistency-distilled student, ready to convert songs.

    Args:
        checkpoint, cfg, device: as :class:`models.base.converter.SVCConverter`.
        steps: sampler steps (teacher) or consistency steps (student); 0: the coarse mel mu,
            vocoded without sampling (the control); None: the config's.
    Raises: CheckpointError when the weights do not fit the checkpoint's config, ConfigError for
        negative steps or a CUDA device without a GPU, MissingWeightsError (content models) or
        FileNotFoundError (vocoder) for absent weights.

    Attributes: ``student`` (from the checkpoint), ``steps``, and the base class's.
    """

    model_type = "DiffComoSVC"

    def __init__(self, checkpoint: dict, cfg: CantorConfig, device: str | torch.device = "cpu",
                 steps: int | None = None):
        from models.svc.comosvc.model import ComoSVC
        from models.vocoders import load_vocoder

        super().__init__(checkpoint, cfg, device)
        self.student = bool(checkpoint["student"])
        inf = cfg.inference.comosvc
        self.steps = steps if steps is not None else (
            inf.student_inference_steps if self.student else inf.inference_steps)
        if self.steps < 0:
            raise ConfigError(f"sampler steps must be at least 0, got {self.steps}")
        self.model = ComoSVC(cfg)
        try:
            self.model.load_state_dict(checkpoint["model"])
        except RuntimeError as e:
            raise CheckpointError(f"the checkpoint's weights do not fit its own config: {e}") from None
        self.model.to(self.device).eval()
        self.vocoder = load_vocoder(cfg, self.device)

    def describe(self) -> str:
        kind = "consistency-distilled student" if self.student else "diffusion teacher"
        if self.steps == 0:
            return f"{kind}, its coarse mel mu (0 steps: no sampling)"
        solver = "consistency" if self.student else self.cfg.inference.comosvc.sampler
        return f"{kind}, {self.steps} {solver} steps"

    def synthesize(self, batch: dict[str, torch.Tensor], singer: str,
                   generator: torch.Generator, tail_frames: int | None = None) -> np.ndarray:
        """Sample the mel of ``batch``, de-normalise it with ``singer``'s dataset statistics and
        vocode it: (B, T * hop_size) float32; with ``tail_frames``, vocode only the last
        ``tail_frames`` frames after :data:`VOCODER_CONTEXT_FRAMES` frames of context whose audio is
        dropped: (B, tail_frames * hop_size)."""
        stats, _ = self.singer_statistics(singer)
        mel_min = torch.tensor(stats["mel_min"], dtype=torch.float32, device=self.device)
        mel_max = torch.tensor(stats["mel_max"], dtype=torch.float32, device=self.device)
        t1 = self.sync()
        mel = self.model.sample(batch, steps=self.steps, student=self.student,
                                generator=generator)["mel"]
        mel = denormalize_mel(mel.float(), mel_min, mel_max)
        mel = torch.where(batch["mask"][:, None, :], mel, torch.full_like(mel, np.log(LOG_CLAMP)))
        skip = 0
        if tail_frames is not None:
            start = max(0, mel.shape[-1] - tail_frames - VOCODER_CONTEXT_FRAMES)
            skip = (mel.shape[-1] - tail_frames - start) * self.vocoder.hop_size
            mel = mel[..., start:]
        t2 = self.sync()
        audio = self.vocoder(mel).float().cpu().numpy()[:, skip:]
        t3 = self.sync()
        self.timings.acoustic += t2 - t1
        self.timings.vocoder += t3 - t2
        return audio
