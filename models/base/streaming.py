"""Realtime conversion, device-free: :class:`StreamingConverter` turns a stream of input blocks into
a stream of converted blocks of the same size, with a loaded :class:`models.base.converter.
SVCConverter` (its feature extractors, acoustic model and vocoder) doing the work.

The scheme is RVC's realtime one (Retrieval-based-Voice-Conversion-WebUI, ``gui_v1.py`` and
``infer/lib/rtrvc.py``; the SOLA step comes from DDSP-SVC). All lengths are samples at the model's
rate unless they say frames (mel frames of ``hop_size`` samples).

Window, newest sample at the right, shifted left by one block B at each step::

    | context C (frames)  |  tail: L = ceil((B + X + S) / hop) frames   |
                                    |   S   |   X   |        B ...        |
                                     search crossfade

* The incoming block goes through an input gate first: mel frames whose RMS is below
  ``inference.realtime.gate_db`` are zeroed (after a hangover of :data:`GATE_HANGOVER_FRAMES`
  either side of loud frames), and the same per-frame gate scales the output, ramped over one hop,
  so silence in gives exact silence out and the voice stops when the singer does.
* F0 is computed on the new block plus a margin of :func:`f0_margin_frames` earlier frames only,
  into a rolling cache of the window's frames: the margin's first frames (the tracker's warm-up)
  are dropped, the rest overwrite the previous block's last estimates, which lacked right context.
* Content features come from the whole window (context + tail) resampled to 16 kHz, through
  :meth:`processors.content.base.ContentExtractor.extract_short` (Whisper on the window alone,
  positional embedding sliced to it, not padded to 30 s). Energy comes from the whole window.
* With a feature-retrieval index (``inference.index_rate`` > 0, models/base/retrieval.py) the
  content features of the window are blended with the target singer's retrieved ones; only the
  last L frames are searched at each step, the earlier ones keep what was retrieved for them when
  they were new (a rolling cache, like F0's; the first converted block searches the whole window).
* The acoustic model sees the whole window; the vocoder generates only the tail
  (:meth:`SVCConverter.synthesize` with ``tail_frames``), whose last B + X + S samples are kept.
* SOLA (synchronous overlap-add): the kept audio ``y`` is shifted by the offset j in [0, S] that
  maximises the normalised cross-correlation with the previous step's crossfade tail ``p`` (X
  samples), c(j) = <y[j:j+X], p> / ||y[j:j+X]||; then y[j:j+X] fades in with r(n) = sin^2 while
  ``p`` fades out with 1 - r (models/base/chunking.py's ramp), the block y[j:j+B] is emitted and
  y[j+B:j+B+X] becomes the next tail.

Timing: the emitted block of step k holds the input from X + S - j samples before the end of block
k - 1 onwards, so the output trails the input by B (collecting a block) + X + S - j (at most
X + S) + whatever the audio device buffers: :meth:`StreamGeometry.latency_seconds`.
"""
from __future__ import annotations

import logging
import math
from collections import deque
from dataclasses import dataclass

import numpy as np
import torch

from models.base.chunking import Chunk, raised_cosine_ramp
from models.base.converter import AUTOSHIFT, SVCConverter
from processors.f0 import extract_f0
from processors.mel import mel_and_energy
from processors.pitch_shift import shift_f0
from utils.schema import RealtimeConfig

log = logging.getLogger(__name__)

# Frames kept open either side of a frame above the gate (11.6 ms each at 22.05 kHz / hop 256), so
# soft onsets and word endings are not chopped.
GATE_HANGOVER_FRAMES = 2
# Autoshift follows the median of the voiced F0 of about the last 30 s.
AUTOSHIFT_HISTORY_SECONDS = 30.0


@dataclass(frozen=True)
class StreamGeometry:
    """The sizes of the streaming window, in samples at ``sample_rate`` (see the module docstring).

    Attributes: block (B, a multiple of hop), context (C, a multiple of hop), crossfade (X),
    search (S), hop, sample_rate; derived: tail_frames (L), window (C + L * hop samples),
    window_frames.
    """

    sample_rate: int
    hop: int
    block: int
    context: int
    crossfade: int
    search: int

    @classmethod
    def from_config(cls, rt: RealtimeConfig, sample_rate: int, hop: int) -> "StreamGeometry":
        """Block and context rounded to whole frames (the block to at least one), crossfade and
        search to whole samples (the crossfade to at least one).

        Raises: ValueError when crossfade + search does not fit in the block."""
        frames = lambda s: int(round(s * sample_rate / hop))
        geometry = cls(sample_rate, hop, max(1, frames(rt.block_seconds)) * hop,
                       frames(rt.context_seconds) * hop,
                       max(1, int(round(rt.crossfade_seconds * sample_rate))),
                       int(round(rt.search_seconds * sample_rate)))
        if geometry.crossfade + geometry.search >= geometry.block:
            raise ValueError(f"crossfade + search ({geometry.crossfade} + {geometry.search} "
                             f"samples) must be shorter than the block ({geometry.block})")
        return geometry

    @property
    def tail_frames(self) -> int:
        return -(-(self.block + self.crossfade + self.search) // self.hop)

    @property
    def window(self) -> int:
        return self.context + self.tail_frames * self.hop

    @property
    def window_frames(self) -> int:
        return self.window // self.hop

    @property
    def block_frames(self) -> int:
        return self.block // self.hop

    @property
    def lookahead(self) -> int:
        """X + S: how far the emitted block ends before the newest input sample, at most."""
        return self.crossfade + self.search

    def latency_seconds(self, device_seconds: float = 0.0) -> float:
        """Worst-case delay from a sample entering to it leaving: block + crossfade + search +
        ``device_seconds`` (the audio device's input + output buffering)."""
        return (self.block + self.crossfade + self.search) / self.sample_rate + device_seconds


def sola_offset(head: np.ndarray, previous_tail: np.ndarray) -> int:
    """The shift j in [0, len(head) - len(previous_tail)] maximising the normalised
    cross-correlation <head[j:j+X], p> / sqrt(||head[j:j+X]||^2 + 1e-8) with p =
    ``previous_tail`` (X samples); 0 when p is silent. ``head``: (X + S,) float32."""
    x = len(previous_tail)
    if not previous_tail.any():
        return 0
    num = np.correlate(head.astype(np.float64), previous_tail.astype(np.float64), mode="valid")
    energy = np.concatenate([[0.0], np.cumsum(head.astype(np.float64) ** 2)])
    den = np.sqrt(energy[x:] - energy[:-x] + 1e-8)
    return int(np.argmax(num / den))


def f0_margin_frames(geometry: StreamGeometry, f0_min: float) -> tuple[int, int]:
    """(margin, warm-up) in frames: F0 is computed on the new block plus ``margin`` earlier
    frames; the first ``warm-up`` of them are dropped (Praat's and WORLD's first frame needs half an
    analysis window of 3 periods of ``f0_min`` before it), the rest re-estimate the previous
    block's last frames, at least the X + S samples that are emitted again."""
    warm = max(1, math.ceil(1.5 / f0_min * geometry.sample_rate / geometry.hop))
    refresh = -(-geometry.lookahead // geometry.hop) + 1
    return warm + refresh, warm


class StreamingConverter:
    """Block-by-block conversion with a loaded converter (module docstring).

    Args:
        converter: a loaded :class:`SVCConverter` (its ``cfg.inference.realtime`` sets the sizes).
        singer: target, a key of the singer table.
        key_shift: semitones, or "autoshift" (the interval from the median of the voiced F0 heard
            so far, :data:`AUTOSHIFT_HISTORY_SECONDS` at most, to the singer's median).
        passthrough: emit the gated input itself through the same window, SOLA and crossfade (same
            latency; for checking audio devices), without running the model.
        full_whisper_window: pad each window's 16 kHz audio to 30 s for the content encoder (the
            offline extractor's path) instead of encoding the window alone; for measuring the
            difference (bins/bench/bench_realtime.py), 30 s of encoder work per block.
    Raises: UnknownSingerError; ValueError as :meth:`StreamGeometry.from_config`.

    Attributes: ``geometry``, ``sample_rate``, ``key_shift`` (semitones applied to the latest
    block).
    """

    def __init__(self, converter: SVCConverter, singer: str, key_shift: float | str = 0.0,
                 passthrough: bool = False, full_whisper_window: bool = False):
        converter.check_target(singer)
        pcfg = converter.cfg.preprocess
        self.converter = converter
        self.singer = singer
        self.requested_shift = key_shift
        self.passthrough = passthrough
        self.full_whisper_window = full_whisper_window
        self.sample_rate = converter.sample_rate
        self.geometry = StreamGeometry.from_config(converter.cfg.inference.realtime,
                                                   self.sample_rate, pcfg.hop_size)
        self.gate_db = converter.cfg.inference.realtime.gate_db
        self.f0_margin, self.f0_warm = f0_margin_frames(self.geometry, pcfg.f0_min)
        self.fade_in = raised_cosine_ramp(self.geometry.crossfade)
        self.history_frames = int(AUTOSHIFT_HISTORY_SECONDS * self.sample_rate / pcfg.hop_size)
        self.reset()

    def reset(self) -> None:
        """Forget all audio heard (silent window, empty caches), as at construction."""
        g = self.geometry
        self.window = np.zeros(g.window, dtype=np.float32)
        self.f0 = np.zeros(g.window_frames, dtype=np.float32)
        self.gate = np.zeros(g.window_frames, dtype=bool)
        self.tail = np.zeros(g.crossfade, dtype=np.float32)
        self.voiced_history: deque[float] = deque(maxlen=self.history_frames)
        self.retrieved: dict[str, np.ndarray] | None = None
        self.key_shift = 0.0 if self.requested_shift == AUTOSHIFT else float(self.requested_shift)
        self.generator = torch.Generator(device=self.converter.device).manual_seed(
            self.converter.cfg.train.seed)

    # --- the steps ---------------------------------------------------------------------------

    def _gate_block(self, block: np.ndarray) -> np.ndarray:
        """Per-frame open/closed gate of the new block (B / hop frames), hangover applied; the
        previous block's open last frames keep the first frames open."""
        hop = self.geometry.hop
        frames = block.reshape(-1, hop).astype(np.float64)
        rms_db = 10.0 * np.log10(np.mean(frames ** 2, axis=1) + 1e-12)
        loud = np.concatenate([self.gate[-GATE_HANGOVER_FRAMES:], rms_db >= self.gate_db])
        kernel = np.ones(2 * GATE_HANGOVER_FRAMES + 1, dtype=bool)
        open_ = np.convolve(np.concatenate([loud, np.zeros(GATE_HANGOVER_FRAMES, bool)]),
                            kernel, mode="same").astype(bool)
        return open_[GATE_HANGOVER_FRAMES:len(loud)]

    def _output_gain(self) -> np.ndarray:
        """Per-sample gain of the last B + X + S window samples: the frame gate, ramped over one
        hop (a moving average of the frame-wise 0/1 steps)."""
        g = self.geometry
        n = g.block + g.lookahead
        frames = self.gate[-(-(n + g.hop) // g.hop) - 1:].astype(np.float32)
        samples = np.repeat(frames, g.hop)
        padded = np.concatenate([np.full(g.hop // 2, samples[0]), samples,
                                 np.full(g.hop - g.hop // 2 - 1, samples[-1])])
        cumsum = np.concatenate([[0.0], np.cumsum(padded, dtype=np.float64)])
        smooth = (cumsum[g.hop:] - cumsum[:-g.hop]) / g.hop
        return smooth[-n:].astype(np.float32)

    def _update_f0(self) -> None:
        """Roll the F0 cache by one block and estimate the new block plus the margin."""
        g, pcfg = self.geometry, self.converter.cfg.preprocess
        self.f0 = np.roll(self.f0, -g.block_frames)
        self.f0[-g.block_frames:] = 0.0
        n = min(g.block_frames + self.f0_margin, g.window_frames)
        segment = self.window[-n * g.hop:]
        if not self.gate[-n:].any():
            return
        f0 = extract_f0(segment, self.sample_rate, pcfg, n)
        warm = min(self.f0_warm, n - g.block_frames)
        f0 = np.where(self.gate[-n:], f0, 0.0)
        self.f0[-(n - warm):] = f0[warm:]
        new = f0[-g.block_frames:]
        self.voiced_history.extend(new[new > 0].tolist())

    def _retrieve(self, content: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """The window's retrieved content features ({name: (window_frames, D)}): the last
        ``tail_frames`` frames searched now, the earlier ones from the rolling cache (module
        docstring); the whole window on the first call after :meth:`reset`."""
        n = self.geometry.tail_frames
        if self.retrieved is None:
            self.retrieved = self.converter.retrieved(content, self.singer)
        else:
            new = self.converter.retrieved({k: v[-n:] for k, v in content.items()}, self.singer)
            for name, feats in new.items():
                self.retrieved[name][-n:] = feats
        return self.retrieved

    def _convert_window(self) -> np.ndarray:
        """The model's audio of the last B + X + S samples of the window, (B + X + S,)."""
        from processors.content import CONTENT_SAMPLE_RATE
        import soxr

        conv, g, pcfg = self.converter, self.geometry, self.converter.cfg.preprocess
        t0 = conv.sync()
        if self.requested_shift == AUTOSHIFT and self.voiced_history:
            self.key_shift = conv.key_shift_for(np.asarray(self.voiced_history, np.float32),
                                                self.singer, AUTOSHIFT)
        shifted = shift_f0(self.f0, self.key_shift)
        f0 = np.where(shifted > 0, np.clip(shifted, pcfg.f0_min, pcfg.f0_max), 0.0)
        energy = mel_and_energy(self.window, pcfg)[1]
        content = {}
        if conv.extractors:
            wav16 = soxr.resample(self.window, self.sample_rate, CONTENT_SAMPLE_RATE, quality="HQ")
            for name, ex in conv.extractors.items():
                content[name] = (ex.extract([wav16], [g.window_frames])[0]
                                 if self.full_whisper_window and name == "whisper"
                                 else ex.extract_short(wav16, g.window_frames))
            if conv.retrieval is not None:
                content = conv.blend_retrieved(content, self._retrieve(content), f0 <= 0)
        conv.timings.features += conv.sync() - t0
        batch = conv._batch([Chunk(0, g.window_frames)], f0.astype(np.float32), energy, content,
                            self.singer)
        audio = conv.synthesize(batch, self.singer, self.generator, tail_frames=g.tail_frames)
        conv.timings.audio += g.block / self.sample_rate
        return audio[0, -(g.block + g.lookahead):]

    def process(self, block: np.ndarray) -> np.ndarray:
        """Convert the next block of input.

        Args: block: (B,) float mono at ``sample_rate`` Hz, B = ``geometry.block``.
        Returns: (B,) float32, the converted audio trailing the input as the module docstring
            says.
        Raises: ValueError for a block of another shape; the pitch tracker's F0Error.
        """
        g = self.geometry
        block = np.asarray(block, dtype=np.float32)
        if block.shape != (g.block,):
            raise ValueError(f"expected a block of shape ({g.block},), got {block.shape}")
        open_ = self._gate_block(block)
        self.window = np.concatenate([self.window[g.block:],
                                      block * np.repeat(open_, g.hop).astype(np.float32)])
        self.gate = np.concatenate([self.gate[g.block_frames:], open_])
        if self.retrieved is not None:
            # the last block's rows wrap around and are searched afresh in _retrieve
            self.retrieved = {k: np.roll(v, -g.block_frames, axis=0) for k, v in self.retrieved.items()}
        gain = self._output_gain()
        if not gain.any():
            self.f0 = np.roll(self.f0, -g.block_frames)
            self.f0[-g.block_frames:] = 0.0
            y = np.zeros(g.block + g.lookahead, dtype=np.float32)
        elif self.passthrough:
            y = self.window[-(g.block + g.lookahead):] * gain
        else:
            self._update_f0()
            y = self._convert_window() * gain
        j = sola_offset(y[:g.lookahead], self.tail)
        out = y[j:j + g.block + g.crossfade].copy()
        out[:g.crossfade] = out[:g.crossfade] * self.fade_in + self.tail * self.fade_in[::-1]
        self.tail = out[g.block:]
        return out[:g.block]
