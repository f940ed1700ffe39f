"""Content-consistency loss: a predicted mel must say what the real one says, as a frozen Whisper
encoder (Radford et al. 2022) hears it.

Both mels (normalised to [-1, 1] per bin, models/base/dataset.py) are denormalised with their
dataset's range, mapped to Whisper's log-mel (processors/content/whisper_mel.py), encoded at the
segment's own length (the short-window path of the realtime converter), and compared frame by
frame:

    L = mean over real encoder frames of (1 - cos(E(pred)_j, E(real)_j))

The real side has no gradient; the encoder's weights never train. A term of issue 27: none of the
anchors (Amphion's DiffComoSVC, so-vits-svc, RVC) has it.
"""
from __future__ import annotations

import torch
from torch import nn

from processors.content.whisper import encoder_features, load_whisper_encoder
from processors.content.whisper_mel import WhisperMel
from utils.paths import resolve_path
from utils.schema import CantorConfig


class ContentConsistencyLoss(nn.Module):
    """L(pred, real) of the module docstring.

    Args: cfg: the experiment config (``train.content_loss``, ``preprocess``).
    Raises: MissingWeightsError / ValueError from load_whisper_encoder for the Whisper file
        (``train.content_loss.whisper_path``, or ``preprocess.whisper_path`` when empty); ValueError
        from WhisperMel when the mel bands are not Whisper's.
    """

    def __init__(self, cfg: CantorConfig):
        super().__init__()
        path = cfg.train.content_loss.whisper_path or cfg.preprocess.whisper_path
        self.mel_map = WhisperMel(cfg.preprocess)
        self.encoder = load_whisper_encoder(resolve_path(path)).eval().requires_grad_(False)

    def train(self, mode: bool = True) -> "ContentConsistencyLoss":
        """The encoder stays in eval mode."""
        super().train(mode)
        self.encoder.eval()
        return self

    def features(self, mel: torch.Tensor, batch: dict[str, torch.Tensor]
                 ) -> tuple[torch.Tensor, torch.Tensor]:
        """Whisper encoder features (B, F, d) of a normalised mel (B, n_mel, T) and their (B, F)
        mask, using the batch's "mel_min" / "mel_max" (B, n_mel) and "mask" (B, T)."""
        lo, hi = batch["mel_min"][..., None], batch["mel_max"][..., None]
        log_mel = (mel + 1.0) / 2.0 * (hi - lo).clamp(min=1e-5) + lo
        x, inside = self.mel_map(log_mel, batch["mask"])
        x = x[..., :x.shape[-1] // 2 * 2]
        feats = encoder_features(self.encoder, x.to(next(self.encoder.parameters()).dtype))
        return feats, inside[:, :2 * feats.shape[1]:2]

    def forward(self, pred: torch.Tensor, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Scalar loss of a predicted normalised mel (B, n_mel, T) against ``batch["mel"]``."""
        with torch.no_grad():
            real, mask = self.features(batch["mel"], batch)
        fake, _ = self.features(pred, batch)
        cos = nn.functional.cosine_similarity(fake.float(), real.float(), dim=-1)
        m = mask.to(cos.dtype)
        return ((1.0 - cos) * m).sum() / m.sum().clamp(min=1.0)
