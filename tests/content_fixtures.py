"""Tiny content models in the real on-disk formats, shared by the content-feature tests."""
from __future__ import annotations

import dataclasses

import numpy as np
import torch

from utils.schema import PreprocessConfig

SR = 16000


def noise(seconds: float, seed: int) -> np.ndarray:
    """Band-limited random signal (not silence: whisper's log-mel clamps relative to the maximum)."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(int(seconds * SR)).astype(np.float32)
    return (np.convolve(x, np.ones(8) / 8, mode="same") * 0.3).astype(np.float32)



def tiny_whisper(n_mels: int = 80, seed: int = 0):
    import whisper.model as wm
    torch.manual_seed(seed)
    dims = wm.ModelDimensions(n_mels=n_mels, n_audio_ctx=1500, n_audio_state=32, n_audio_head=2,
                              n_audio_layer=2, n_vocab=60, n_text_ctx=12, n_text_state=32,
                              n_text_head=2, n_text_layer=2)
    model = wm.Whisper(dims)
    with torch.no_grad():
        for name, p in model.named_parameters():  # all random, decoder positions included
            is_ln_gain = name.endswith(".weight") and name.split(".")[-2] in (
                "ln", "ln_post", "attn_ln", "cross_attn_ln", "mlp_ln")
            p.copy_(torch.randn_like(p) * 0.2 + (1.0 if is_ln_gain else 0.0))
    return model.eval()


def save_whisper(model, path):
    torch.save({"dims": dataclasses.asdict(model.dims), "model_state_dict": model.state_dict()}, path)
    return path


def pcfg_for(**kw) -> PreprocessConfig:
    return dataclasses.replace(PreprocessConfig(), **kw)
