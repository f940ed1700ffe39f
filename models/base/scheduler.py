"""Learning-rate schedule of stage 2, from ``cfg.train.scheduler``.

The rate for optimizer step s (0-based) is ``train.adamw.lr * factor(s)``:

- warm-up: ``factor = (s + 1) / warmup_steps`` while ``s < warmup_steps``; then, with
  ``t = s - warmup_steps``,
- ``none``: 1;
- ``exponential``: ``gamma ** t`` (lr multiplied by gamma every step);
- ``cosine``: ``m + (1 - m) * (1 + cos(pi * min(t, T) / T)) / 2`` with ``m = min_lr / train.adamw.lr``
  and ``T = train.max_steps - warmup_steps``: a half cosine from train.adamw.lr down to min_lr at
  max_steps (Loshchilov & Hutter 2017, SGDR, without restarts).
"""
from __future__ import annotations

import math

import torch
from torch.optim.lr_scheduler import LambdaLR

from utils.schema import TrainConfig


def lr_factor(step: int, train: TrainConfig) -> float:
    """Multiplier of ``train.adamw.lr`` at optimizer step ``step`` (module doc)."""
    sch = train.scheduler
    if step < sch.warmup_steps:
        return (step + 1) / sch.warmup_steps
    t = step - sch.warmup_steps
    if sch.type == "exponential":
        return sch.gamma ** t
    if sch.type == "cosine":
        floor = sch.min_lr / train.adamw.lr
        span = max(train.max_steps - sch.warmup_steps, 1)
        return floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * min(t, span) / span))
    return 1.0


def build_scheduler(optimizer: torch.optim.Optimizer, train: TrainConfig) -> LambdaLR:
    """A LambdaLR stepping :func:`lr_factor`; call ``step()`` once per optimizer step. Its state
    dict holds only numbers (safe for ``torch.load(weights_only=True)``)."""
    return LambdaLR(optimizer, lambda step: lr_factor(step, train))
