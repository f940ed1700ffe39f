"""The Convert tab's figure: the source's and the output's mel spectrograms and F0 curves, drawn
with matplotlib's object API (no pyplot, so it is safe on the UI's worker threads)."""
from __future__ import annotations

import numpy as np


def mel_f0_figure(source: dict[str, np.ndarray], output: dict[str, np.ndarray], frame_seconds: float,
                  key_shift: float):
    """A figure of three panels: source mel, output mel (n_mel, T) log-mel, and both F0 curves (T,)
    in Hz (0 = unvoiced, not drawn) over time in seconds; the source's F0 is also drawn shifted by
    ``key_shift`` semitones when that is not 0, the curve the output should follow.

    Args: ``source``/``output``: dicts with "mel" and "f0" as processors.features.acoustic_features
        returns them; ``frame_seconds``: hop size / sample rate.
    Returns: matplotlib.figure.Figure.
    """
    from matplotlib.figure import Figure

    fig = Figure(figsize=(10, 7.5), layout="constrained")
    axes = fig.subplots(3, 1, sharex=True)
    lo = min(float(source["mel"].min()), float(output["mel"].min()))
    hi = max(float(source["mel"].max()), float(output["mel"].max()))
    for ax, feats, title in ((axes[0], source, "source mel"), (axes[1], output, "output mel")):
        mel = feats["mel"]
        im = ax.imshow(mel, origin="lower", aspect="auto", vmin=lo, vmax=hi, cmap="magma",
                       extent=(0, mel.shape[1] * frame_seconds, 0, mel.shape[0]))
        ax.set_title(title)
        ax.set_ylabel("mel bin")
    fig.colorbar(im, ax=axes[:2], label="log-mel")
    ax = axes[2]
    for f0, label, style in ((source["f0"], "source F0", ":"), (output["f0"], "output F0", "-")):
        ax.plot(np.arange(len(f0)) * frame_seconds, np.where(f0 > 0, f0, np.nan), style, label=label)
    if key_shift:
        f0 = source["f0"] * 2.0 ** (key_shift / 12.0)
        ax.plot(np.arange(len(f0)) * frame_seconds, np.where(f0 > 0, f0, np.nan), "--", alpha=0.7,
                label=f"source F0 {key_shift:+g} semitones")
    ax.set_yscale("log")
    ax.set_ylabel("F0 (Hz)")
    ax.set_xlabel("time (s)")
    ax.legend(loc="upper right")
    return fig
