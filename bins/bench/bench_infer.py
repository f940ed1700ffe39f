"""Benchmark of stage 3: real-time factor (processing seconds per second of audio) of converting a
demo song, by stage (features: F0, energy and content features; acoustic model; vocoder),
teacher (``inference.comosvc.inference_steps``) vs one-step student.

    python bins/bench/bench_infer.py [--seconds 60] [--config egs/svc/DiffComoSVC/exp_config_demo.json]
        [--teacher EXP] [--student EXP] [--device cpu]

The song is the singing takes of one demo singer (``--singer``) concatenated to ``--seconds``.
Without ``--teacher`` / ``--student`` a random-weight model of the config's size (the demo size by
default) is written in the real checkpoint format, once as a teacher and once as a student, with
statistics computed from the song; the content model and vocoder are the config's (the demo:
Whisper tiny.en and the universal HiFi-GAN). Timings of random weights are those of trained ones.
Prints one row per model and the process's peak resident memory (run with --seconds 300 for the
5-minute figure).
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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default=str(DEMO_CONFIG),
                        help="config of the random-weight model (default: the demo's)")
    parser.add_argument("--teacher", default=None, help="a trained teacher experiment instead")
    parser.add_argument("--student", default=None, help="a trained student experiment instead")
    parser.add_argument("--data", default=str(DEMO_DATA), help="the GTSinger demo subset")
    parser.add_argument("--singer", default="EN-Alto-2", help="demo singer whose takes form the song")
    parser.add_argument("--seconds", type=float, default=60.0, help="song length (default 60)")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()

    import logging

    import torch

    from models.svc.comosvc.inference import ComoSVCConverter
    from utils.config import load_config

    logging.basicConfig(level=logging.WARNING)
    cfg = load_config(args.config)
    sr = cfg.preprocess.sample_rate
    song = demo_song(Path(args.data), args.singer, args.seconds, sr)
    print(f"song: {len(song) / sr:.1f} s of {args.singer} at {sr} Hz; device {args.device}, "
          f"{torch.get_num_threads()} torch threads; config {args.config}")
    print(f"{'model':8} {'steps':>5} {'features':>9} {'acoustic':>9} {'vocoder':>9} {'total RTF':>9} "
          f"{'wall s':>7}")
    with tempfile.TemporaryDirectory() as tmp:
        experiments = {
            "teacher": args.teacher or random_experiment(cfg, song, Path(tmp) / "t", False),
            "student": args.student or random_experiment(cfg, song, Path(tmp) / "s", True)}
        for kind, exp in experiments.items():
            converter = ComoSVCConverter.from_experiment(exp, args.device)
            singer = next(iter(converter.singers))
            converter.convert(song[:2 * sr], singer, 0, name="warm-up")
            converter.timings = type(converter.timings)()
            start = time.perf_counter()
            converter.convert(song, singer, 0, name=kind)
            wall = time.perf_counter() - start
            t = converter.timings
            print(f"{kind:8} {converter.steps:>5} {t.features / t.audio:>9.3f} "
                  f"{t.acoustic / t.audio:>9.3f} {t.vocoder / t.audio:>9.3f} "
                  f"{t.total / t.audio:>9.3f} {wall:>7.1f}", flush=True)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak resident memory of the process: {peak:.0f} MiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
