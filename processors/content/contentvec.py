"""ContentVec features (Qian et al. 2022) run with transformers' HubertModel.

Layer 12 (the last layer of the HuBERT-base encoder) either through ``final_proj`` (256-d, Amphion's
choice) or as is (768-d, so-vits-svc 4.x), picked by ``preprocess.contentvec_final_proj``. One frame
every 320 samples at 16 kHz (20 ms); frame j covers samples [320j, 320j + 400), centred at 12.47 ms +
20j ms.

Batching is exact: each window's conv front end runs alone (its first layer's GroupNorm normalises
over the whole time axis, so zero padding would change every frame), then the frame sequences are
padded and the encoder masks the padding from the true lengths (Amphion instead marks every
exactly-zero sample as padding).
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch

from processors.content.base import CONTENT_SAMPLE_RATE, ContentExtractor
from processors.content.convert_contentvec import (FINAL_PROJ_FILE, hubert_from_fairseq,
                                                   load_fairseq_checkpoint)
from processors.content.weights import MissingWeightsError, require
from utils.schema import PreprocessConfig

CONFIG_KEY = "preprocess.contentvec_path"
HOW_TO_GET = ("download checkpoint_best_legacy_500.pt (ContentVec legacy, 500 classes) from the ContentVec "
              "repository (github.com/auspicious3000/contentvec) and put it there, or point the key at a "
              "folder made by `cantor convert-contentvec <that .pt> <folder>`. "
              "See pretrained/contentvec/README.md.")


def load_contentvec(path: Path, final_proj: bool) -> tuple[torch.nn.Module, torch.nn.Linear | None]:
    """Load ContentVec from a fairseq ``.pt`` (converted in memory) or a converted folder.

    Returns: (HubertModel, final_proj Linear if ``final_proj`` else None), eval mode, float32, CPU.
    Raises:
        MissingWeightsError: ``path`` is absent, or a folder lacks final_proj.safetensors while
            ``final_proj`` is asked for.
        ValueError: the file is not a HuBERT-base fairseq checkpoint, or has no final_proj.
    """
    from transformers import HubertModel

    require(path, CONFIG_KEY, HOW_TO_GET)
    if path.is_dir():
        model = HubertModel.from_pretrained(path, local_files_only=True).float().eval()
        if not final_proj:
            return model, None
        from safetensors.torch import load_file
        proj_file = path / FINAL_PROJ_FILE
        if not proj_file.is_file():
            raise MissingWeightsError(proj_file, f"{CONFIG_KEY} (with preprocess.contentvec_final_proj "
                                      "= true)", "convert the fairseq checkpoint again with `cantor "
                                      "convert-contentvec`, which writes it, or set "
                                      "preprocess.contentvec_final_proj to false")
        weights = load_file(str(proj_file))
        proj = torch.nn.Linear(weights["weight"].shape[1], weights["weight"].shape[0])
        proj.load_state_dict({k: v.float() for k, v in weights.items()})
        return model, proj.eval()
    model, proj = hubert_from_fairseq(load_fairseq_checkpoint(path), str(path))
    if final_proj and proj is None:
        raise ValueError(f"{path}: the checkpoint has no final_proj; set "
                         "preprocess.contentvec_final_proj to false")
    return model, proj if final_proj else None


class ContentVecExtractor(ContentExtractor):
    """ContentVec layer-12 features aligned to mel frames; see :class:`ContentExtractor` for
    ``extract``. Frame timing comes from the model's conv front end (kernels, strides)."""

    def __init__(self, model: torch.nn.Module, final_proj: torch.nn.Linear | None,
                 pcfg: PreprocessConfig, device: str | torch.device):
        super().__init__(pcfg)
        self.device = torch.device(device)
        self.model = model.to(self.device).eval()
        self.final_proj = final_proj.to(self.device).eval() if final_proj is not None else None
        self.kernels = tuple(model.config.conv_kernel)
        self.strides = tuple(model.config.conv_stride)
        self.samples_per_frame = math.prod(self.strides)
        self.min_samples = 1 + sum((k - 1) * math.prod(self.strides[:i]) for i, k in enumerate(self.kernels))
        self.frame_period_s = self.samples_per_frame / CONTENT_SAMPLE_RATE
        self.first_center_s = (self.min_samples - 1) / 2 / CONTENT_SAMPLE_RATE
        self.dim = final_proj.out_features if final_proj is not None else model.config.hidden_size

    @classmethod
    def from_config(cls, pcfg: PreprocessConfig, device: str | torch.device) -> "ContentVecExtractor":
        """Load ``pcfg.contentvec_path`` (resolved from the project root); errors as load_contentvec."""
        from utils.paths import resolve_path
        model, proj = load_contentvec(resolve_path(pcfg.contentvec_path), pcfg.contentvec_final_proj)
        return cls(model, proj, pcfg, device)

    def n_model_frames(self, n_samples: int) -> int:
        """Frames the conv front end gives for ``n_samples`` samples (floor((n - k) / s) + 1 per layer)."""
        for k, s in zip(self.kernels, self.strides):
            n_samples = (n_samples - k) // s + 1
        return n_samples

    @torch.inference_mode()
    def encode_windows(self, windows: list[np.ndarray]) -> list[np.ndarray]:
        convs = [self.model.feature_extractor(torch.from_numpy(w)[None].to(self.device))[0].T
                 for w in windows]  # each (F_i, conv_dim)
        lengths = torch.tensor([len(c) for c in convs], device=self.device)
        x = torch.nn.utils.rnn.pad_sequence(convs, batch_first=True)
        mask = torch.arange(x.shape[1], device=self.device)[None] < lengths[:, None]
        h = self.model.encoder(self.model.feature_projection(x), attention_mask=mask).last_hidden_state
        if self.final_proj is not None:
            h = self.final_proj(h)
        h = h.float().cpu().numpy()
        return [h[i, :n] for i, n in enumerate(lengths.tolist())]
