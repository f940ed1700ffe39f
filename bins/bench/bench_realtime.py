"""Benchmark of ``cantor vc`` without a sound card: a demo song streamed through
models/base/streaming.py at several block sizes, per-block compute time (median, p95, max),
underruns over the stream (models/base/stream_runner.py's stream model) and the algorithmic
latency (block + crossfade + search + ``--device-latency``).

    python bins/bench/bench_realtime.py [--blocks 0.25 0.5 1.0] [--seconds 60] [--realtime]
        [--threads 2] [--student EXP] [--whisper-window] [--index-rate X [--index-vectors N]]

Without ``--student`` a random-weight one-step student of the demo config's size is written (as
bins/bench/bench_infer.py does; timings of random weights are those of trained ones), with the
config's Whisper tiny.en and universal HiFi-GAN. ``--realtime`` feeds the blocks at real-time
pace (60 s per block size) instead of as fast as possible. ``--whisper-window`` also prints how
far the content features of the streaming window (Whisper on the window alone) are from the same
window padded to 30 s, the offline path. ``--index-rate`` converts with feature retrieval
(models/base/retrieval.py); for the random student its singer gets an index of ``--index-vectors``
frames of the demo's stage 1 Whisper features (default: the most an index holds, MAX_VECTORS), so
the search costs what a full index costs.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

import numpy as np

from bins.bench.bench_infer import DEMO_CONFIG, DEMO_DATA, demo_song, random_experiment


def whisper_window_distance(converter, song: np.ndarray, windows: list[float]) -> None:
    """Print, per window length, the cosine similarity and relative L2 distance between Whisper
    features of the window alone and of the window padded to 30 s, over the window's last 0.5 s
    (the frames a block emits), averaged over windows every 2 s of the song."""
    import soxr

    ex = converter.extractors["whisper"]
    wav16 = soxr.resample(song, converter.sample_rate, 16000, quality="HQ")
    print("whisper window: cosine / relative L2 of the last 0.5 s, window alone vs padded to 30 s")
    for seconds in windows:
        n = int(seconds * 16000)
        cos, rel = [], []
        for end in range(n, len(wav16), 32000):
            w = wav16[end - n:end]
            a, b = ex.encode_short(w)[-25:], ex.encode_windows([w])[0][-25:]
            cos.append(np.mean(np.sum(a * b, 1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)))
            rel.append(np.mean(np.linalg.norm(a - b, axis=1) / np.linalg.norm(b, axis=1)))
        print(f"  {seconds:5.1f} s window: cosine {np.mean(cos):.3f}, relative L2 {np.mean(rel):.3f}"
              f" ({len(cos)} windows)")


def bench_index(exp: Path, vectors: int) -> None:
    """Build ``exp``'s retrieval index for its one singer (bench_singer) from the first ``vectors``
    frames of the demo's stage 1 features (data/demo/processed/gtsinger_demo/whisper)."""
    from models.base.checkpoint import conversion_checkpoint, load_checkpoint
    from models.base.retrieval import build_index, index_folder
    from utils.io import save_json
    from utils.paths import PROJECT_ROOT

    file = conversion_checkpoint(exp)
    checkpoint = load_checkpoint(file)
    dataset = checkpoint["config"]["dataset"][0]
    cached = sorted((PROJECT_ROOT / "data/demo/processed" / dataset / "whisper").glob("*.npy"))
    frames = np.concatenate([np.load(p) for p in cached])[:vectors]
    processed = exp / "bench_processed"
    (processed / dataset / "whisper").mkdir(parents=True, exist_ok=True)
    np.save(processed / dataset / "whisper" / "bench.npy", frames)
    save_json(processed / dataset / "train.json", [{"Dataset": "bench", "Singer": "singer",
                                                    "Uid": "bench"}])
    build_index(checkpoint, index_folder(file), processed)
    print(f"index: {len(frames)} vectors of {frames.shape[1]} dims")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--student", default=None, help="a trained student experiment instead")
    parser.add_argument("--blocks", type=float, nargs="+", default=[0.25, 0.5, 1.0],
                        help="block sizes, seconds")
    parser.add_argument("--seconds", type=float, default=60.0, help="stream length (default 60)")
    parser.add_argument("--realtime", action="store_true", help="feed blocks at real-time pace")
    parser.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    parser.add_argument("--device-latency", type=float, default=0.02,
                        help="seconds the sound card buffers, added to the latency (default 0.02)")
    parser.add_argument("--whisper-window", action="store_true",
                        help="also measure short-window against 30 s Whisper features")
    parser.add_argument("--singer", default="EN-Alto-2", help="demo singer whose takes are streamed")
    parser.add_argument("--index-rate", type=float, default=0.0,
                        help="inference.index_rate (default 0: no retrieval)")
    parser.add_argument("--index-vectors", type=int, default=None,
                        help="vectors in the random student's index (default MAX_VECTORS)")
    args = parser.parse_args()

    import logging

    import torch

    from models.base.stream_runner import stream_file
    from models.base.streaming import StreamingConverter
    from models.svc.comosvc.inference import ComoSVCConverter
    from utils.config import load_config

    logging.basicConfig(level=logging.WARNING)
    torch.set_num_threads(args.threads)
    cfg = load_config(DEMO_CONFIG)
    sr = cfg.preprocess.sample_rate
    song = demo_song(DEMO_DATA, args.singer, args.seconds, sr)
    print(f"{len(song) / sr:.0f} s of {args.singer}; {args.threads} torch threads; load average "
          f"{' '.join(f'{x:.1f}' for x in os.getloadavg())}; pace "
          f"{'real time' if args.realtime else 'as fast as possible'}")
    with tempfile.TemporaryDirectory() as tmp:
        exp = args.student or random_experiment(cfg, song, Path(tmp) / "s", True)
        if args.index_rate > 0 and not args.student:
            from models.base.retrieval import MAX_VECTORS
            bench_index(exp, args.index_vectors or MAX_VECTORS)
        for block in args.blocks:
            converter = ComoSVCConverter.from_experiment(
                exp, "cpu", overrides=[f"inference.realtime.block_seconds={block}",
                                       f"inference.index_rate={args.index_rate}"])
            singer = next(iter(converter.singers))
            stream_file(StreamingConverter(converter, singer), song[:2 * sr])  # warm-up
            converter.timings = type(converter.timings)()
            stream = StreamingConverter(converter, singer)
            _, stats = stream_file(stream, song, realtime=args.realtime)
            t = converter.timings
            print(f"block {block:.2f} s: {stats.summary()}; latency "
                  f"{1000 * stream.geometry.latency_seconds(args.device_latency):.0f} ms "
                  f"(block+crossfade+search {1000 * stream.geometry.latency_seconds():.0f} + device "
                  f"{1000 * args.device_latency:.0f}); RTF by stage: features "
                  f"{t.features / t.audio:.3f}, acoustic {t.acoustic / t.audio:.3f}, vocoder "
                  f"{t.vocoder / t.audio:.3f}", flush=True)
        if args.whisper_window:
            whisper_window_distance(converter, song, [1.0, 2.5, 5.0, 10.0])
    print(f"load average at the end {' '.join(f'{x:.1f}' for x in os.getloadavg())}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
