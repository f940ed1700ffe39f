"""Mel spectrogram images for TensorBoard: mels coloured with a matplotlib colormap and stacked, no
figure rendering (cheap enough to log at every validation)."""
from __future__ import annotations

import numpy as np
from matplotlib import colormaps

SEPARATOR_ROWS = 2


def mel_image(mels: list[np.ndarray], cmap: str = "viridis") -> np.ndarray:
    """Stack mels (n_mel, T) top to bottom in list order (low bins at the bottom of each panel),
    on one shared colour scale, separated by white rows.

    Returns: (3, H, T) uint8 RGB image (``SummaryWriter.add_image`` with dataformats "CHW"),
        H = n_mel * len(mels) + SEPARATOR_ROWS * (len(mels) - 1).
    """
    lo = min(float(m.min()) for m in mels)
    hi = max(float(m.max()) for m in mels)
    scale = max(hi - lo, 1e-8)
    rows = []
    for i, mel in enumerate(mels):
        if i:
            rows.append(np.ones((SEPARATOR_ROWS, mel.shape[1], 4)))
        rows.append(colormaps[cmap]((mel[::-1] - lo) / scale))
    rgb = np.concatenate(rows, axis=0)[..., :3]
    return (rgb * 255).round().astype(np.uint8).transpose(2, 0, 1)
