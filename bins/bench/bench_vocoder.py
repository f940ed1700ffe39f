"""CPU real-time factor (compute seconds / audio seconds; < 1 is faster than real time) of the
vocoders on 10 s of audio: the universal HiFi-GAN V1 (22.05 kHz, real weights), a random-weight
BigVGAN of the 24 kHz / 100-mel / 8-8-2-2 shape, and Griffin-Lim with 32 iterations.

    python bins/bench/bench_vocoder.py [--seconds 10] [--bigvgan-channels 512] [--threads N]

Each vocoder runs once on a 0.5 s warm-up and then ``--repeats`` times on the full clip; the
fastest run is reported as wall-clock time and as process CPU time (on a shared machine the CPU
time with --threads 1 is the steadier figure).
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CLIP = "ZH-Tenor-1/zh06/control.flac"


def best_time(fn, repeats: int) -> tuple[float, float]:
    """(wall-clock s, process CPU s) of the fastest of ``repeats`` calls of ``fn``."""
    times = []
    for _ in range(repeats):
        wall, cpu = time.perf_counter(), time.process_time()
        fn()
        times.append((time.perf_counter() - wall, time.process_time() - cpu))
    return min(times)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--demo", type=Path,
                        default=ROOT.parent / "shared" / "data" / "gtsinger_demo")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--bigvgan-channels", type=int, default=512,
                        help="upsample_initial_channel of the random BigVGAN (NVIDIA's v1/v2 "
                             "24 kHz releases use 1536 with upsampling 4,4,2,2,2,2)")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = parser.parse_args()

    import numpy as np
    import torch
    from tqdm import tqdm

    from models.vocoders import load_vocoder
    from models.vocoders.bigvgan import BigVGANGenerator
    from models.vocoders.formats import BIGVGAN_24K, MelSettings
    from models.vocoders.vocoder import Vocoder
    from processors.mel import mel_spectrogram
    from utils.audio import load_audio
    from utils.config import load_config
    from utils.schema import PreprocessConfig

    if args.threads:
        torch.set_num_threads(args.threads)
    demo_cfg = load_config(ROOT / "egs" / "svc" / "DiffComoSVC" / "exp_config_demo.json")
    bigvgan_pre = PreprocessConfig()  # the 24 kHz defaults
    assert MelSettings.of(bigvgan_pre) == BIGVGAN_24K
    torch.manual_seed(0)
    bigvgan = BigVGANGenerator(100, [8, 8, 2, 2], [16, 16, 4, 4], args.bigvgan_channels, [3, 7, 11],
                               [[1, 3, 5]] * 3).eval()
    cases = [
        ("hifigan V1 universal", demo_cfg.preprocess, load_vocoder(demo_cfg)),
        (f"bigvgan random {args.bigvgan_channels}ch", bigvgan_pre,
         Vocoder("bigvgan", BIGVGAN_24K, bigvgan)),
        ("griffin-lim 32 iters", demo_cfg.preprocess,
         Vocoder("griffin_lim", MelSettings.of(demo_cfg.preprocess), None, griffin_lim_iters=32)),
    ]
    rows = []
    for name, pre, vocoder in tqdm(cases, desc="vocoders"):
        wav = load_audio(args.demo / CLIP, pre.sample_rate)
        wav = np.resize(wav, int(args.seconds * pre.sample_rate))  # loops a short clip
        mel = mel_spectrogram(wav, pre)[None]
        vocoder(mel[..., :int(0.5 * pre.sample_rate) // pre.hop_size])
        wall, cpu = best_time(lambda: vocoder(mel), args.repeats)
        audio = mel.shape[-1] * pre.hop_size / pre.sample_rate
        rows.append((name, audio, wall, cpu))
    print(f"\nCPU, torch {torch.__version__}, {torch.get_num_threads()} threads, load average "
          f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    print(f"{'vocoder':<28} {'audio s':>8} {'wall s':>8} {'RTF wall':>9} {'cpu s':>8} "
          f"{'RTF cpu':>8}")
    for name, audio, wall, cpu in rows:
        print(f"{name:<28} {audio:>8.2f} {wall:>8.2f} {wall / audio:>9.3f} {cpu:>8.2f} "
              f"{cpu / audio:>8.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
