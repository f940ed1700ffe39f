"""Benchmark of stage 3: real-time factor (processing seconds per second of audio) of converting a
demo song, by stage (features: F0, energy and content features; acoustic model; vocoder), for the
one-step student with every vocoder backend installed here (models/vocoders/backends.py: torch,
ONNX Runtime, OpenVINO; fp32 and, where the CPU has AMX-BF16 or AVX512-BF16, bf16), side by side
in one run on the same song; optionally the teacher (``inference.comosvc.inference_steps``).

    python bins/bench/bench_infer.py [--seconds 60] [--config egs/svc/DiffComoSVC/exp_config_demo.json]
        [--teacher EXP] [--student EXP] [--with-teacher] [--keep DIR] [--device cpu]

The song is the singing takes of one demo singer (``--singer``) concatenated to ``--seconds``.
Without ``--teacher`` / ``--student`` a random-weight model of the config's size (the demo size by
default) is written in the real checkpoint format, once as a teacher and once as a student, with
statistics computed from the song (``--keep DIR`` keeps them and the song as song.wav, e.g. for
``cantor infer``); the content model and vocoder are the config's (the demo: Whisper tiny.en and
the universal HiFi-GAN). Timings of random weights are those of trained ones.

Prints the CPU model and its AMX / AVX512-BF16 flags, the load average, the backend
``vocoder.backend = auto`` takes here, the content encoders' real-time factor alone, one row per
model and backend (stage RTFs in wall-clock time; "cpu s/s": process CPU seconds per second of
audio over all threads, the steadier figure on a shared machine), and the process's peak resident
memory (run with --seconds 300 for the 5-minute figure).
"""
from __future__ import annotations

import argparse
import csv
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
DEMO_CONFIG = ROOT / "egs/svc/DiffComoSVC/exp_config_demo.json"
DEMO_DATA = ROOT.parent / "shared/data/gtsinger_demo"


def demo_song(data: Path, singer: str, seconds: float, sample_rate: int) -> np.ndarray:
    """The singing takes of ``singer`` (manifest.tsv order) concatenated and cut to ``seconds``."""
    from utils.audio import load_audio
    with open(data / "manifest.tsv", encoding="utf-8") as f:
        rows = [r for r in csv.DictReader(f, delimiter="\t")
                if r["singer"] == singer and r["kind"] == "singing"]
    if not rows:
        raise SystemExit(f"no singing take of {singer!r} in {data / 'manifest.tsv'}")
    need, parts = int(seconds * sample_rate), []
    while sum(map(len, parts)) < need:
        parts += [load_audio(data / r["path"], sample_rate) for r in rows]
    return np.concatenate(parts)[:need]


def random_experiment(cfg, song: np.ndarray, folder: Path, student: bool) -> Path:
    """Write a random-weight ComoSVC of ``cfg`` as a checkpoint (teacher) or export (student), its
    statistics taken from ``song`` (one singer, "bench_singer")."""
    import torch

    from models.base.checkpoint import FORMAT, save_checkpoint
    from models.svc.comosvc.model import ComoSVC
    from processors.features import acoustic_features
    from utils.config import config_to_dict

    feats = acoustic_features(song, cfg.preprocess)
    log_e = np.log(feats["energy"])
    voiced = feats["f0"][feats["f0"] > 0]
    stats = {"mel_min": feats["mel"].min(1).tolist(), "mel_max": feats["mel"].max(1).tolist(),
             "log_energy_min": float(log_e.min()), "log_energy_max": float(log_e.max()),
             "singers": {"bench_singer": {"f0_median": float(np.median(voiced))}}}
    torch.manual_seed(0)
    model = ComoSVC(cfg)
    model.set_energy_range(stats["log_energy_min"], stats["log_energy_max"])
    payload = {"format": FORMAT, "student": student, "model": model.export_state_dict(),
               "config": config_to_dict(cfg), "singers": {"bench_singer": 0},
               "statistics": {"bench": stats}, "step": 0, "epoch": 0}
    save_checkpoint(folder / ("export" if student else "checkpoint"), 0, payload, keep_last=0)
    return folder


def timed_row(converter, song: np.ndarray, label: str, steps: int) -> str:
    """Convert ``song`` once (after a 2 s warm-up) and format its per-stage real-time factors."""
    singer = next(iter(converter.singers))
    converter.convert(song[:2 * converter.sample_rate], singer, 0, name="warm-up")
    converter.timings = type(converter.timings)()
    start, cpu = time.perf_counter(), time.process_time()
    converter.convert(song, singer, 0, name=label)
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu
    t = converter.timings
    return (f"{label:26} {steps:>5} {t.features / t.audio:>9.3f} {t.acoustic / t.audio:>9.3f} "
            f"{t.vocoder / t.audio:>9.3f} {t.total / t.audio:>9.3f} {wall:>7.1f} "
            f"{cpu / t.audio:>8.3f}")


def content_share(converter, song: np.ndarray) -> str:
    """Real-time factor of the content encoders alone on ``song`` (the rest of "features" is F0,
    energy and the mel front end)."""
    import soxr

    from processors.content import CONTENT_SAMPLE_RATE
    wav16 = soxr.resample(song, converter.sample_rate, CONTENT_SAMPLE_RATE, quality="HQ")
    frames = len(song) // converter.cfg.preprocess.hop_size
    start = time.perf_counter()
    for extractor in converter.extractors.values():
        extractor.extract([wav16], [frames])
    seconds = time.perf_counter() - start
    return (f"content encoders ({', '.join(converter.extractors) or 'none'}) alone: RTF "
            f"{seconds / (len(song) / converter.sample_rate):.3f}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default=str(DEMO_CONFIG),
                        help="config of the random-weight model (default: the demo's)")
    parser.add_argument("--teacher", default=None, help="a trained teacher experiment instead")
    parser.add_argument("--student", default=None, help="a trained student experiment instead")
    parser.add_argument("--with-teacher", action="store_true",
                        help="also time the teacher (with the auto vocoder backend)")
    parser.add_argument("--keep", default=None, help="write the random experiments here (kept)")
    parser.add_argument("--data", default=str(DEMO_DATA), help="the GTSinger demo subset")
    parser.add_argument("--singer", default="EN-Alto-2", help="demo singer whose takes form the song")
    parser.add_argument("--seconds", type=float, default=60.0, help="song length (default 60)")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()

    import dataclasses
    import logging
    import os

    import torch

    from models.svc.comosvc.inference import ComoSVCConverter
    from models.vocoders import load_vocoder
    from models.vocoders.backends import measurable_candidates
    from models.vocoders.runtimes import installed_backends
    from utils.audio import save_wav
    from utils.config import load_config
    from utils.cpu import cpu_flags, describe_cpu

    logging.basicConfig(level=logging.WARNING)
    cfg = load_config(args.config)
    sr = cfg.preprocess.sample_rate
    song = demo_song(Path(args.data), args.singer, args.seconds, sr)
    print(f"CPU: {describe_cpu()}; {os.cpu_count()} cores, load average "
          f"{', '.join(f'{x:.1f}' for x in os.getloadavg())}")
    print(f"song: {len(song) / sr:.1f} s of {args.singer} at {sr} Hz; device {args.device}, "
          f"{torch.get_num_threads()} torch threads; config {args.config}")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(args.keep or tmp)
        if args.keep:
            save_wav(folder / "song.wav", song, sr)
        student = ComoSVCConverter.from_experiment(
            args.student or random_experiment(cfg, song, folder / "student", True), args.device)
        vcfg = student.cfg.vocoder
        with_backend = lambda b, p: dataclasses.replace(  # noqa: E731
            student.cfg, vocoder=dataclasses.replace(vcfg, backend=b, precision=p))
        auto = load_vocoder(with_backend("auto", "auto"), args.device)
        print(f"vocoder.backend = auto takes {auto.backend} {auto.precision} here "
              f"(measured once, cached in {vcfg.cache_dir})")
        print(content_share(student, song))
        print(f"{'model, vocoder backend':26} {'steps':>5} {'features':>9} {'acoustic':>9} "
              f"{'vocoder':>9} {'total RTF':>9} {'wall s':>7} {'cpu s/s':>8}")
        for candidate in measurable_candidates(cpu_flags(), installed_backends()):
            student.vocoder = load_vocoder(with_backend(candidate.backend, candidate.precision),
                                           args.device)
            print(timed_row(student, song, f"student, {candidate}", student.steps), flush=True)
        if args.with_teacher:
            teacher = ComoSVCConverter.from_experiment(
                args.teacher or random_experiment(cfg, song, folder / "teacher", False),
                args.device)
            teacher.vocoder = auto
            print(timed_row(teacher, song, f"teacher, {auto.backend} {auto.precision}",
                            teacher.steps), flush=True)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak resident memory of the process: {peak:.0f} MiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
