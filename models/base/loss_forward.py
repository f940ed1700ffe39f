"""The trainer's forward pass: a model's loss, plus the content-consistency loss when configured."""
from __future__ import annotations

from torch import nn

from utils.config import ConfigError


class LossForward(nn.Module):
    """Makes ``model.loss`` the forward pass, so that accelerate's DDP wrapper (gradient
    synchronisation) and autocast (mixed precision) apply to it; adds the content-consistency
    loss (``train.content_loss``, modules/losses/content.py) on the mels the model's loss
    returns under "predicted": the mean over them, logged as "content_loss" and added to "loss"
    with ``train.content_loss.weight``. The Whisper encoder lives here, outside the model's state
    dict, so checkpoints do not carry it."""

    def __init__(self, model: nn.Module, content_loss: nn.Module | None = None,
                 content_weight: float = 0.0):
        super().__init__()
        self.model = model
        self.content_loss = content_loss
        self.content_weight = content_weight

    def forward(self, batch: dict, part: str | None = None) -> dict:
        out = self.model.loss(batch) if part is None else self.model.loss(batch, part=part)
        predicted = out.pop("predicted", None)
        if self.content_loss is not None and part in (None, "generator"):
            if not predicted:
                raise ConfigError(f"train.content_loss.weight > 0, but {type(self.model).__name__}"
                                  f" gives no predicted mel to score; set it to 0")
            terms = [self.content_loss(mel, batch) for mel in predicted.values()]
            out["content_loss"] = sum(terms) / len(terms)
            out["loss"] = out["loss"] + self.content_weight * out["content_loss"]
        return out
