"""Learning-rate schedule of stage 2, from ``cfg.train.scheduler``.

Per optimizer step (a LambdaLR stepped once per optimizer step), the rate for step s (0-based) is
``train.adamw.lr * factor(s)``:

- warm-up: ``factor = (s + 1) / warmup_steps`` while ``s < warmup_steps``; then, with
  ``t = s - warmup_steps``,
- ``none``: 1;
- ``exponential``: ``gamma ** t`` (lr multiplied by gamma every step);
- ``cosine``: ``m + (1 - m) * (1 + cos(pi * min(t, T) / T)) / 2`` with ``m = min_lr / train.adamw.lr``
  and ``T = train.max_steps - warmup_steps``: a half cosine from train.adamw.lr down to min_lr at
  max_steps (Loshchilov & Hutter 2017, SGDR, without restarts).

Per epoch, ``reducelronplateau`` (Amphion's DiffComoSVC schedule, models/svc/comosvc/
comosvc_trainer.py): torch's ReduceLROnPlateau stepped once at the end of each epoch with the
validation loss; after more than ``patience`` epochs without a relative improvement of 1e-4 the rate is
multiplied by ``factor``, never going below ``min_lr``.
"""
from __future__ import annotations

import math

import torch
from torch.optim.lr_scheduler import LambdaLR, LRScheduler, ReduceLROnPlateau

from utils.schema import TrainConfig


def lr_factor(step: int, train: TrainConfig) -> float:
    """Multiplier of ``train.adamw.lr`` at optimizer step ``step`` (module doc; not for
    reducelronplateau, whose rate depends on the validation losses)."""
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


def is_per_epoch(train: TrainConfig) -> bool:
    """True when the schedule steps once per epoch on the validation loss (reducelronplateau),
    False when it steps once per optimizer step."""
    return train.scheduler.type == "reducelronplateau"


def build_scheduler(optimizer: torch.optim.Optimizer, train: TrainConfig) -> LRScheduler:
    """The schedule of ``train.scheduler``: a ReduceLROnPlateau (call ``step(validation_loss)``
    once per epoch) or a LambdaLR stepping :func:`lr_factor` (call ``step()`` once per optimizer
    step); see :func:`is_per_epoch`. Their state dicts hold only numbers and strings (safe for
    ``torch.load(weights_only=True)``)."""
    sch = train.scheduler
    if is_per_epoch(train):
        return ReduceLROnPlateau(optimizer, mode="min", factor=sch.factor, patience=sch.patience,
                                 min_lr=sch.min_lr)
    return LambdaLR(optimizer, lambda step: lr_factor(step, train))
