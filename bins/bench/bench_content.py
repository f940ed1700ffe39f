"""Content-feature throughput: seconds of audio per wall-clock second, for Whisper encoders of the
tiny / base / small / medium / large shapes and for ContentVec (HuBERT base + final_proj), through the
real extractors (windows, batching, alignment). Weights are random: speed does not depend on them.

    python bins/bench/bench_content.py                       # tiny, base, medium, contentvec; 2 x 30 s
    python bins/bench/bench_content.py --models tiny,contentvec --seconds 10 --utterances 4

Whisper always encodes whole 30 s windows, so its rate scales with the clip length up to 30 s;
ContentVec's cost follows the real length. Run by hand on an idle machine; report the figures. The
last column (audio seconds per CPU second of this process, all threads summed) shows how far other
load on the machine slowed the wall-clock figure.
"""
from __future__ import annotations

import argparse
import dataclasses
import sys
import time

import numpy as np
import torch

# Whisper encoder shapes (n_audio_state, n_audio_head, n_audio_layer), Radford et al. 2022, Table 1.
WHISPER_SHAPES = {"tiny": (384, 6, 4), "base": (512, 8, 6), "small": (768, 12, 12),
                  "medium": (1024, 16, 24), "large": (1280, 20, 32)}


def build(name: str, pcfg):
    """A content extractor with random weights, on the CPU."""
    if name == "contentvec":
        from transformers import HubertConfig, HubertModel

        from processors.content.contentvec import ContentVecExtractor
        model = HubertModel(HubertConfig())  # HuBERT base: 12 x 768, the ContentVec network
        return ContentVecExtractor(model, torch.nn.Linear(768, 256), pcfg, "cpu")
    from whisper.model import AudioEncoder

    from processors.content.whisper import WhisperExtractor
    state, heads, layers = WHISPER_SHAPES[name]
    return WhisperExtractor(AudioEncoder(80, 1500, state, heads, layers), pcfg, "cpu")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="tiny,base,medium,contentvec",
                        help=f"comma list of {', '.join(WHISPER_SHAPES)}, contentvec")
    parser.add_argument("--seconds", type=float, default=30.0, help="length of each clip (default 30)")
    parser.add_argument("--utterances", type=int, default=2, help="clips in one extract() call")
    parser.add_argument("--repeats", type=int, default=1, help="timed calls per model (after a warm-up)")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    from utils.schema import PreprocessConfig
    pcfg = dataclasses.replace(PreprocessConfig(), content_batch_size=args.utterances)
    rng = np.random.default_rng(0)
    wavs = [(0.1 * rng.standard_normal(int(args.seconds * 16000))).astype(np.float32)
            for _ in range(args.utterances)]
    n_frames = [int(args.seconds * pcfg.sample_rate) // pcfg.hop_size] * args.utterances
    print(f"CPU, {torch.get_num_threads()} torch threads; {args.utterances} clips x {args.seconds:g} s "
          f"per call, batch {args.utterances}")
    print(f"{'model':<11} {'params':>8} {'dim':>5} {'s/call':>8} {'audio s / wall s':>17} "
          f"{'audio s / CPU s':>16}")
    for name in args.models.split(","):
        extractor = build(name.strip(), pcfg)
        params = sum(p.numel() for p in getattr(extractor, "encoder", getattr(extractor, "model", None)).parameters())
        extractor.extract(wavs[:1], n_frames[:1])  # warm-up
        times, cpu = [], []
        for _ in range(args.repeats):
            start, start_cpu = time.perf_counter(), time.process_time()
            extractor.extract(wavs, n_frames)
            times.append(time.perf_counter() - start)
            cpu.append(time.process_time() - start_cpu)
        audio = args.utterances * args.seconds
        print(f"{name:<11} {params / 1e6:>7.1f}M {extractor.dim:>5} {min(times):>8.2f} "
              f"{audio / min(times):>17.2f} {audio / min(cpu):>16.2f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
