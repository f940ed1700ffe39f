"""Driving a :class:`models.base.streaming.StreamingConverter` without a sound card: a whole file
block by block (as fast as possible, or at real-time pace), the underrun arithmetic of a realtime
stream, and the per-block compute statistics that ``cantor vc`` and bins/bench/bench_realtime.py
report.

The stream model is that of a duplex audio callback (PortAudio, as ``cantor vc`` uses it): block k
(B seconds) is complete at a_k = (k + 1) B; blocks are processed one after another, block k from
s_k = max(a_k, f_{k-1}) to f_k = s_k + c_k (c_k its compute time); its output must be ready when
the next block is complete, a_k + B, or the device runs dry: an underrun. A late block delays the
ones after it, so one slow block can cost several underruns.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np

from models.base.streaming import StreamingConverter


def count_underruns(compute_seconds: Sequence[float], block_seconds: float) -> int:
    """Blocks finished after their deadline a_k + B in the stream model of the module docstring.

    Args: compute_seconds: c_k per block, in order; block_seconds: B.
    Returns: the number of blocks with f_k > a_k + B.
    """
    finish, late = 0.0, 0
    for k, c in enumerate(compute_seconds):
        arrival = (k + 1) * block_seconds
        finish = max(arrival, finish) + c
        late += finish > arrival + block_seconds
    return late


@dataclass
class StreamStats:
    """Per-block compute times (seconds) of a stream of ``block_seconds`` blocks, and what they
    mean for realtime playback."""

    block_seconds: float
    compute_seconds: list[float] = field(default_factory=list)

    @property
    def underruns(self) -> int:
        return count_underruns(self.compute_seconds, self.block_seconds)

    def percentile(self, q: float) -> float:
        return float(np.percentile(self.compute_seconds, q)) if self.compute_seconds else 0.0

    def summary(self) -> str:
        """One line: blocks, compute median / p95 / max in ms and as a fraction of the block,
        underruns."""
        med, p95 = self.percentile(50), self.percentile(95)
        top = max(self.compute_seconds, default=0.0)
        b = self.block_seconds
        return (f"{len(self.compute_seconds)} blocks of {1000 * b:.0f} ms: compute median "
                f"{1000 * med:.0f} ms ({med / b:.2f} x block), p95 {1000 * p95:.0f} ms "
                f"({p95 / b:.2f} x), max {1000 * top:.0f} ms ({top / b:.2f} x); "
                f"underruns {self.underruns}")


def stream_file(stream: StreamingConverter, wav: np.ndarray, realtime: bool = False,
                on_block: Callable[[int, StreamStats], None] | None = None
                ) -> tuple[np.ndarray, StreamStats]:
    """Convert a whole signal block by block, as a live stream would.

    The signal is zero-padded at the end so every sample leaves the stream; the output is shifted
    back by the stream's lookahead X + S (``geometry.lookahead``), so it lines up with the input to
    within the SOLA search S.

    Args:
        stream: a fresh (or :meth:`~StreamingConverter.reset`) streaming converter.
        wav: (samples,) float32 mono at ``stream.sample_rate``.
        realtime: feed block k no earlier than (k + 1) B seconds after the start (sleeping in
            between), as a microphone would; False: as fast as possible.
        on_block: called after each block with (block index, stats so far), e.g. for a status line.
    Returns: (output (samples,) float32, :class:`StreamStats`).
    """
    g = stream.geometry
    n = len(wav)
    total = -(-(n + g.lookahead) // g.block) * g.block
    padded = np.zeros(total, dtype=np.float32)
    padded[:n] = wav
    stats = StreamStats(g.block / stream.sample_rate)
    out = np.empty(total, dtype=np.float32)
    t0 = time.perf_counter()
    for k in range(total // g.block):
        if realtime:
            time.sleep(max(0.0, t0 + (k + 1) * stats.block_seconds - time.perf_counter()))
        begin = time.perf_counter()
        out[k * g.block:(k + 1) * g.block] = stream.process(padded[k * g.block:(k + 1) * g.block])
        stats.compute_seconds.append(time.perf_counter() - begin)
        if on_block is not None:
            on_block(k, stats)
    return out[g.lookahead:g.lookahead + n], stats


class ResampledStream:
    """A block function of the model's rate run at a sound card's rate: device-rate chunks of any
    size in, as many device-rate samples out.

    Input is resampled to the model's rate (soxr's streaming resampler, so chunk edges leave no
    trace) into a FIFO; each full block of ``block`` samples goes through ``process``; its output is
    resampled back into an output FIFO that each call drains by the chunk's size. Both FIFOs start
    with ``margin`` model-rate samples of silence, so the resamplers' start-up delay and their
    one-sample jitter never leave a chunk short: the added latency is about ``margin`` samples plus
    the resamplers' own delay.

    Args: process: (block,) -> (block,) float32 at ``model_rate`` (StreamingConverter.process);
        block: its block size; model_rate, device_rate: Hz; margin: model-rate samples.
    Attributes: ``short`` (output samples the FIFO could not supply, played as silence).
    """

    def __init__(self, process: Callable[[np.ndarray], np.ndarray], block: int, model_rate: int,
                 device_rate: int, margin: int = 256):
        import soxr

        self.process, self.block = process, block
        self.to_model = soxr.ResampleStream(device_rate, model_rate, 1, dtype="float32")
        self.to_device = soxr.ResampleStream(model_rate, device_rate, 1, dtype="float32")
        self.inbox = np.zeros(margin, dtype=np.float32)
        self.outbox = np.zeros(int(round(margin * device_rate / model_rate)), dtype=np.float32)
        self.short = 0

    def __call__(self, chunk: np.ndarray) -> np.ndarray:
        """(n,) float32 at the device rate -> (n,) float32 at the device rate."""
        self.inbox = np.concatenate([self.inbox, self.to_model.resample_chunk(
            np.asarray(chunk, dtype=np.float32))])
        while len(self.inbox) >= self.block:
            out = self.process(self.inbox[:self.block])
            self.inbox = self.inbox[self.block:]
            self.outbox = np.concatenate([self.outbox, self.to_device.resample_chunk(out)])
        n = len(chunk)
        result = np.zeros(n, dtype=np.float32)
        take = min(n, len(self.outbox))
        result[:take] = self.outbox[:take]
        self.outbox = self.outbox[take:]
        self.short += n - take
        return result
