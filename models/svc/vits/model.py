"""VitsSVC: the generator of so-vits-svc 4.1 (SynthesizerTrn), i.e. VITS (Kim et al. 2021,
"Conditional Variational Autoencoder with Adversarial Learning for End-to-End Text-to-Speech")
with content features in place of text and an NSF-HiFiGAN decoder:

    content (+ singer) + voiced flag ──▶ prior encoder (+ coarse F0) ──▶ m_p, logs_p   p(z_p | c)
    linear spectrogram, singer g ──▶ posterior encoder ──▶ z ~ N(m_q, e^{2 logs_q})   q(z | x)
    z ──flow(g)──▶ z_p                                  (training: KL(q || p) on z_p)
    z slice, F0 slice, g ──▶ NSF-HiFiGAN ──▶ waveform   (training: GAN + mel L1 against the audio)
    conversion: z_p = m_p + e^{logs_p} * eps * noise_scale ──flow^-1(g)──▶ z ──▶ decoder
    optional (model.vits.use_f0_predictor): prior input (detached), source lf0 contour, g
        ──▶ F0 predictor ──▶ lf0 of the target singer (models/svc/vits/f0_predictor.py)

F0 is interpolated through unvoiced frames (linear, the ends held) before it reaches the prior's
coarse-F0 embedding and the NSF source, as so-vits-svc 4.1 does; the voiced flag keeps the
voicing. Layout: frame features (B, T) / (B, T, D) as models/base/dataset.py; hidden sequences
(B, C, T); waveforms (B, N) with N = T * hop_size.
"""
from __future__ import annotations

import torch
from torch import nn

from models.svc.vits.f0_predictor import F0Predictor, f0_to_lf0, lf0_to_f0, normalise_lf0
from models.vocoders.nsf_hifigan import NSFHiFiGANGenerator
from modules.encoder.condition_encoder import quantise_f0
from modules.flow.coupling import ResidualCouplingFlow
from modules.flow.wavenet import WaveNet
from modules.singer_embedding import embed_singers
from modules.transformer.relative_position_transformer import RelativePositionTransformer
from processors.mel import magnitude_spectrogram
from utils.schema import CantorConfig

# Fixed so-vits-svc / VITS sizes: content pre-net kernel, posterior and flow WaveNet kernel and
# dilation rate, relative-attention window.
CONTENT_KERNEL = 5
WAVENET_KERNEL = 5
WAVENET_DILATION = 1
ATTENTION_WINDOW = 4


def interpolate_unvoiced(f0: torch.Tensor, voiced: torch.Tensor) -> torch.Tensor:
    """F0 linearly interpolated over unvoiced frames, held constant before the first and after the
    last voiced frame; a row with no voiced frame stays 0.

    Args: f0 (B, T) Hz; voiced (B, T) bool. Returns: (B, T) Hz.
    """
    out = torch.zeros_like(f0)
    t = torch.arange(f0.shape[1], device=f0.device)
    for b in range(f0.shape[0]):
        v = voiced[b].nonzero()[:, 0]
        if len(v) == 0:
            continue
        right_raw = torch.searchsorted(v, t)
        left = v[(right_raw - 1).clamp(0, len(v) - 1)]
        right = v[right_raw.clamp(0, len(v) - 1)]
        span = (right - left).clamp(min=1).to(f0.dtype)
        w = ((t - left).to(f0.dtype) / span).clamp(0, 1)
        out[b] = f0[b, left] + w * (f0[b, right] - f0[b, left])
    return out


def frame_mask(batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """(B, 1, T) float mask of real frames."""
    return batch["mask"][:, None, :].float()


class PriorEncoder(nn.Module):
    """The "text" encoder: content embeddings + voiced flag (+ singer), plus a 256-bin coarse F0
    embedding, through the relative-position Transformer, projected to (m_p, logs_p).

    Args: cfg (reads model.vits, model.condition_encoder.{<content>_dim, f0_bins,
        singer_table_size}, preprocess.{content_features, f0_min, f0_max}).
    Shapes: batch -> m_p, logs_p (B, inter_channels, T).
    """

    def __init__(self, cfg: CantorConfig):
        super().__init__()
        v, ce, p = cfg.model.vits, cfg.model.condition_encoder, cfg.preprocess
        h = v.hidden_channels
        self.inter = v.inter_channels
        self.f0_range = (p.f0_min, p.f0_max)
        self.content_pre = nn.ModuleDict(
            {name: nn.Conv1d(getattr(ce, f"{name}_dim"), h, CONTENT_KERNEL,
                             padding=CONTENT_KERNEL // 2) for name in p.content_features})
        self.voiced_embedding = nn.Embedding(2, h)
        self.singer_embedding = nn.Embedding(ce.singer_table_size, h) if v.singer_in_prior else None
        self.f0_embedding = nn.Embedding(ce.f0_bins, h)
        self.encoder = RelativePositionTransformer(h, v.n_layers, v.n_heads, v.filter_channels,
                                                   v.kernel_size, v.dropout, ATTENTION_WINDOW)
        self.proj = nn.Conv1d(h, 2 * v.inter_channels, 1)

    def embed(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """The encoder's input before F0: content pre-nets + voiced flag (+ singer).
        Args: batch (content features, "uv", "mask", "singer", optionally a mix "singer_weights":
        modules/singer_embedding.py). Returns: (B, hidden, T)."""
        x = sum(conv(batch[name].transpose(1, 2)) for name, conv in self.content_pre.items())
        x = x * frame_mask(batch)
        voiced = (~batch["uv"] & batch["mask"]).long()
        x = x + self.voiced_embedding(voiced).transpose(1, 2)
        if self.singer_embedding is not None:
            x = x + embed_singers(self.singer_embedding, batch)[:, :, None]
        return x

    def forward(self, batch: dict[str, torch.Tensor], x: torch.Tensor, f0: torch.Tensor):
        """Args: batch ("mask"); x (B, hidden, T) from :meth:`embed`; f0 (B, T) Hz, interpolated.
        Returns: (m_p, logs_p), each (B, inter_channels, T), zero on padded frames."""
        mask = frame_mask(batch)
        bins = quantise_f0(f0, f0 <= 0, self.f0_embedding.num_embeddings, *self.f0_range)
        x = x + self.f0_embedding(bins).transpose(1, 2)
        h = self.encoder((x * mask).transpose(1, 2), batch["mask"]).transpose(1, 2)
        stats = self.proj(h) * mask
        return stats[:, :self.inter], stats[:, self.inter:]


class PosteriorEncoder(nn.Module):
    """q(z | x): 1x1 convolution, WaveNet conditioned on g, 1x1 projection to (m_q, logs_q), and
    a reparameterised sample z = m_q + e^{logs_q} eps.

    Shapes: spec (B, F, T), mask (B, 1, T), g (B, gin, 1) -> z, m_q, logs_q (B, C, T)."""

    def __init__(self, in_channels: int, out_channels: int, hidden: int, n_layers: int,
                 gin_channels: int):
        super().__init__()
        self.out_channels = out_channels
        self.pre = nn.Conv1d(in_channels, hidden, 1)
        self.enc = WaveNet(hidden, WAVENET_KERNEL, WAVENET_DILATION, n_layers, gin_channels)
        self.proj = nn.Conv1d(hidden, 2 * out_channels, 1)

    def forward(self, spec: torch.Tensor, mask: torch.Tensor, g: torch.Tensor):
        h = self.enc(self.pre(spec) * mask, mask, g)
        stats = self.proj(h) * mask
        m, logs = stats[:, :self.out_channels], stats[:, self.out_channels:]
        z = (m + torch.randn_like(m) * torch.exp(logs)) * mask
        return z, m, logs


class VitsSVC(nn.Module):
    """The VitsSVC generator (module doc); its state dict is what conversion loads.

    Args: cfg: the experiment config (model.vits, model.condition_encoder, preprocess).
    """

    def __init__(self, cfg: CantorConfig):
        super().__init__()
        v, p = cfg.model.vits, cfg.preprocess
        self.preprocess = p
        self.segment_frames = v.segment_size // p.hop_size
        self.singer_embedding = nn.Embedding(cfg.model.condition_encoder.singer_table_size,
                                             v.gin_channels)
        self.prior = PriorEncoder(cfg)
        self.posterior = PosteriorEncoder(p.n_fft // 2 + 1, v.inter_channels, v.hidden_channels,
                                          v.n_layers_q, v.gin_channels)
        self.flow = ResidualCouplingFlow(v.inter_channels, v.hidden_channels, WAVENET_KERNEL,
                                         WAVENET_DILATION, v.n_flow_layer, v.n_flows,
                                         v.gin_channels)
        self.decoder = NSFHiFiGANGenerator(
            v.inter_channels, p.sample_rate, v.gin_channels, v.upsample_rates,
            v.upsample_kernel_sizes, v.upsample_initial_channel, v.resblock_kernel_sizes,
            v.resblock_dilation_sizes)
        self.f0_predictor = F0Predictor(
            v.hidden_channels, v.gin_channels, v.n_layers, v.n_heads, v.filter_channels,
            v.kernel_size, v.dropout) if v.use_f0_predictor else None

    @staticmethod
    def _voiced(batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """(B, T) bool: real frames with a pitch."""
        return ~batch["uv"] & batch["mask"] & (batch["f0"] > 0)

    def _f0(self, batch: dict[str, torch.Tensor], voiced: torch.Tensor) -> torch.Tensor:
        return interpolate_unvoiced(batch["f0"], voiced)

    def forward(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """The training pass: posterior on the spectrogram of ``batch["audio"]`` (B, N), flow,
        prior, and the decoder on one random window of ``segment_size`` samples per row.

        Returns: dict with ``y_hat`` (B, 1, S) generated and ``y`` (B, 1, S) real audio of the
        windows, ``z_p``, ``m_p``, ``logs_p``, ``m_q``, ``logs_q`` (B, C, T), ``mask`` (B, 1, T);
        with the F0 predictor also ``lf0`` (the take's, interpolated) and ``lf0_pred`` (B, T).
        """
        hop, seg = self.preprocess.hop_size, self.segment_frames
        mask = frame_mask(batch)
        g = embed_singers(self.singer_embedding, batch)[:, :, None]
        voiced = self._voiced(batch)
        f0 = self._f0(batch, voiced)
        x = self.prior.embed(batch)
        m_p, logs_p = self.prior(batch, x, f0)
        spec = magnitude_spectrogram(batch["audio"], self.preprocess)[..., :mask.shape[-1]]
        z, m_q, logs_q = self.posterior(spec, mask, g)
        z_p = self.flow(z, mask, g)
        lengths = batch["mask"].sum(1)
        starts = (torch.rand(len(lengths), device=z.device) * (lengths - seg + 1).clamp(min=1)).long()
        pad = max(seg - z.shape[-1], 0)
        z_pad = nn.functional.pad(z, (0, pad))
        f0_pad = nn.functional.pad(f0, (0, pad))
        audio = nn.functional.pad(batch["audio"], (0, max(seg * hop - batch["audio"].shape[-1], 0)))
        z_seg = torch.stack([z_pad[b, :, s:s + seg] for b, s in enumerate(starts.tolist())])
        f0_seg = torch.stack([f0_pad[b, s:s + seg] for b, s in enumerate(starts.tolist())])
        y = torch.stack([audio[b, s * hop:(s + seg) * hop] for b, s in enumerate(starts.tolist())])
        y_hat = self.decoder(z_seg, f0_seg, g)
        out = {"y_hat": y_hat, "y": y[:, None], "z_p": z_p, "m_p": m_p, "logs_p": logs_p,
               "m_q": m_q, "logs_q": logs_q, "mask": mask}
        if self.f0_predictor is not None:
            out["lf0"] = f0_to_lf0(f0)
            out["lf0_pred"] = self._predict_lf0(batch, x, out["lf0"], voiced, g, random_scale=True)
        return out

    def _predict_lf0(self, batch, x, lf0, voiced, g, random_scale: bool) -> torch.Tensor:
        contour = normalise_lf0(lf0, voiced, batch["mask"], random_scale)
        return self.f0_predictor(x.detach(), contour, batch["mask"], g)

    @torch.no_grad()
    def infer(self, batch: dict[str, torch.Tensor], noise_scale: float,
              generator: torch.Generator | None = None, predict_f0: bool = False) -> torch.Tensor:
        """Conversion: z_p from the prior (std scaled by ``noise_scale``), the inverse flow with
        the target singer, the decoder; with ``predict_f0`` the F0 predictor's contour replaces
        the source's (``batch["f0"]``, any key shift included, gives only its shape).

        Returns: (B, T * hop_size) float waveform in [-1, 1].
        Raises: ValueError for ``predict_f0`` on a model without the predictor.
        """
        mask = frame_mask(batch)
        g = embed_singers(self.singer_embedding, batch)[:, :, None]
        voiced = self._voiced(batch)
        f0 = self._f0(batch, voiced)
        x = self.prior.embed(batch)
        if predict_f0:
            if self.f0_predictor is None:
                raise ValueError("inference.vits.predict_f0: this model has no F0 predictor "
                                 "(model.vits.use_f0_predictor was off when it was trained)")
            f0 = lf0_to_f0(self._predict_lf0(batch, x, f0_to_lf0(f0), voiced, g, random_scale=False))
            f0 = f0.clamp(min=0) * batch["mask"]
        m_p, logs_p = self.prior(batch, x, f0)
        eps = torch.randn(m_p.shape, generator=generator, device=m_p.device)
        z_p = (m_p + eps * torch.exp(logs_p) * noise_scale) * mask
        z = self.flow(z_p, mask, g, reverse=True)
        return self.decoder(z * mask, f0, g)[:, 0]
