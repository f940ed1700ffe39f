"""Content features (what is sung, not who sings it) from local weights, for any input length, aligned
to the mel frames: Whisper encoder output and ContentVec layer 12.

    extractors = load_content_extractors(cfg.preprocess, "cpu")
    check_content_dims(extractors, cfg.model.condition_encoder)
    feats = extractors["whisper"].extract([wav_16k], [n_mel_frames])  # [(T, D) float32]

Stage 1 uses :func:`processors.content.stage.extract_content_for_dataset`; inference calls the
extractors directly on the source song.
"""
from __future__ import annotations

import torch

from processors.content.base import CONTENT_SAMPLE_RATE, ContentExtractor
from processors.content.weights import MissingWeightsError
from utils.schema import ConditionEncoderConfig, PreprocessConfig

__all__ = ["CONTENT_SAMPLE_RATE", "ContentExtractor", "MissingWeightsError", "check_content_dims",
           "check_content_weights", "load_content_extractors"]

CONTENT_FEATURES = ("whisper", "contentvec")


def load_content_extractors(pcfg: PreprocessConfig, device: str | torch.device
                            ) -> dict[str, ContentExtractor]:
    """One extractor per name in ``pcfg.content_features`` ("whisper": ``pcfg.whisper_path``;
    "contentvec": ``pcfg.contentvec_path`` with ``pcfg.contentvec_final_proj``).

    Each has ``.dim`` and ``.extract(wavs_16k: list[(samples,) float32 at 16 kHz], n_frames:
    list[int]) -> list[(n_frames_i, dim) float32]`` (batched by ``pcfg.content_batch_size`` windows).
    Raises: ValueError for an unknown feature name or an unusable checkpoint (empty, truncated,
        foreign or refused by the safe loader: the message names the file and the config key);
        MissingWeightsError (naming the file, the config key and how to get it) for absent weights.
    """
    unknown = [n for n in pcfg.content_features if n not in CONTENT_FEATURES]
    if unknown:
        raise ValueError(f"preprocess.content_features: unknown {unknown}; known: {list(CONTENT_FEATURES)}")
    extractors: dict[str, ContentExtractor] = {}
    for name in pcfg.content_features:
        try:
            if name == "whisper":
                from processors.content.whisper import WhisperExtractor
                extractors[name] = WhisperExtractor.from_config(pcfg, device)
            else:
                from processors.content.contentvec import ContentVecExtractor
                extractors[name] = ContentVecExtractor.from_config(pcfg, device)
        except MissingWeightsError:
            raise
        except Exception as e:  # torch.load and the loaders raise many types for a bad file
            from utils.paths import resolve_path
            path = resolve_path(getattr(pcfg, f"{name}_path"))
            text = " ".join(str(e).split())
            if isinstance(e, ValueError) and text.startswith(f"{path}: "):   # the loader's own
                raise ValueError(f"{path} (preprocess.{name}_path): "
                                 f"{text.removeprefix(f'{path}: ')}") from None
            raise ValueError(f"{path} (preprocess.{name}_path): cannot load the {name} weights "
                             f"({type(e).__name__}: {text})") from None
    return extractors


def check_content_weights(pcfg: PreprocessConfig, ccfg: ConditionEncoderConfig) -> None:
    """Load every configured content model once on CPU and check its feature size, then free it:
    stage 1 calls this before any work, so bad weights fail in seconds, not after hours of
    acoustic features. Raises: as :func:`load_content_extractors` and :func:`check_content_dims`."""
    if pcfg.content_features:
        check_content_dims(load_content_extractors(pcfg, "cpu"), ccfg)


def check_content_dims(extractors: dict[str, ContentExtractor], ccfg: ConditionEncoderConfig) -> None:
    """Raise ValueError if an extractor's feature size differs from the model config's
    (``model.condition_encoder.whisper_dim`` / ``contentvec_dim``)."""
    for name, extractor in extractors.items():
        expected = getattr(ccfg, f"{name}_dim")
        if extractor.dim != expected:
            raise ValueError(f"{name} features are {extractor.dim}-d but model.condition_encoder."
                             f"{name}_dim = {expected}: set it to {extractor.dim} or use other weights")
