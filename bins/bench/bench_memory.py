"""Benchmark of conversion memory: the peak resident memory (RSS) of ``cantor infer`` on songs of
1, 5 and 10 minutes, each converted by a child process of its own (peak taken from ``os.wait4``'s
``ru_maxrss``, so one length's peak never hides another's).

    python bins/bench/bench_memory.py [--minutes 1 5 10] [--config egs/svc/DiffComoSVC/exp_config_demo.json]
        [--student EXP] [--keep DIR] [--set KEY=VALUE ...]

The songs are the singing takes of one demo singer (``--singer``) repeated to each length and
written as 44.1 kHz 16-bit mono WAVs (what a user's file usually is; the converter resamples it).
Without ``--student`` a random-weight one-step student of the config's size (the demo size by
default) is written in the real checkpoint format (memory does not depend on the weights' values);
the content model and vocoder are the config's (the demo: Whisper tiny.en and the universal
HiFi-GAN, ``vocoder.backend = auto``). A 5 s conversion runs first so that the vocoder backend
measurement is cached and not counted. Prints the CPU, then per length the peak RSS and the wall
time of the conversion.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from bins.bench.bench_infer import DEMO_CONFIG, DEMO_DATA, demo_song, random_experiment  # noqa: E402

SONG_RATE = 44100


def peak_rss(command: list[str]) -> tuple[int, float, float]:
    """Run ``command`` as a child process; (its exit status, its peak RSS in bytes, wall seconds)."""
    start = time.perf_counter()
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        sys.stderr.write(proc.stderr.read().decode(errors="replace")[-3000:])
    proc.stderr.close()
    return proc.returncode, usage.ru_maxrss * 1024.0, wall  # ru_maxrss: KiB on Linux


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, nargs="+", default=[1.0, 5.0, 10.0])
    parser.add_argument("--config", default=str(DEMO_CONFIG),
                        help="config of the random-weight student (default: the demo's)")
    parser.add_argument("--student", default=None, help="a trained student experiment instead")
    parser.add_argument("--keep", default=None, help="write the songs and the model here (kept)")
    parser.add_argument("--data", default=str(DEMO_DATA), help="the GTSinger demo subset")
    parser.add_argument("--singer", default="EN-Alto-2", help="demo singer whose takes form the songs")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="a conversion setting passed to cantor infer, e.g. "
                             "inference.batch_size=2")
    args = parser.parse_args()

    import torch

    from utils.audio import save_wav
    from utils.config import load_config
    from utils.cpu import describe_cpu

    cfg = load_config(args.config)
    song = demo_song(Path(args.data), args.singer, max(args.minutes) * 60, SONG_RATE)
    print(f"CPU: {describe_cpu()}; {os.cpu_count()} cores, {torch.get_num_threads()} torch "
          f"threads, load average {', '.join(f'{x:.1f}' for x in os.getloadavg())}")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(args.keep or tmp)
        folder.mkdir(parents=True, exist_ok=True)
        if args.student:
            student = Path(args.student)
        else:
            import soxr
            excerpt = soxr.resample(song[:30 * SONG_RATE], SONG_RATE, cfg.preprocess.sample_rate)
            student = random_experiment(cfg, excerpt, folder / "student", True)
        from models.base.checkpoint import conversion_checkpoint, load_checkpoint
        singer = next(iter(load_checkpoint(conversion_checkpoint(student))["singers"]))

        def infer(wav: Path) -> list[str]:
            return [sys.executable, "-m", "cantor.cli", "infer", str(wav), "-m", str(student), "-s",
                    singer, "-o", str(folder / "out.wav"),
                    *[a for s in args.overrides for a in ("--set", s)]]

        warm = folder / "warm_up.wav"
        save_wav(warm, song[:5 * SONG_RATE], SONG_RATE)
        code, _, _ = peak_rss(infer(warm))
        if code != 0:
            return code
        print(f"model {student}; songs: {args.singer} at {SONG_RATE} Hz, 16-bit mono WAV; "
              f"settings {' '.join(args.overrides) or 'the config'}")
        print(f"{'song':>8} {'peak RSS':>10} {'wall s':>8}")
        for minutes in args.minutes:
            wav = folder / f"song_{minutes:g}min.wav"
            save_wav(wav, song[:int(minutes * 60 * SONG_RATE)], SONG_RATE)
            code, peak, wall = peak_rss(infer(wav))
            if code != 0:
                return code
            print(f"{minutes:>6g} m {peak / 2 ** 30:>7.2f} GiB {wall:>8.1f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
