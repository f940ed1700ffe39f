"""Benchmark of stage 1's acoustic features: seconds of audio processed per wall-clock second for
mel+energy and for each F0 extractor, with 1 and 2 worker processes (run by hand; not a test).

    python bins/bench/bench_preprocess.py [--config egs/svc/DiffComoSVC/exp_config_demo.json]
        [--data ../shared/data/gtsinger_demo] [--files 4] [--workers 1 2] [--kinds mel+energy dio]

The subset is the first ``--files`` "control" takes of the demo manifest (one per singer first),
decoded and resampled to ``preprocess.sample_rate`` before timing (decoding is not timed). Each
measurement is one ``Pool.map`` over the subset after the code has been warmed up in the parent;
the figure in brackets divides by the workers' CPU time instead, which other load on the machine
does not inflate.
Extractors whose package is not importable (torchcrepe, torchfcpe) are reported as unavailable.
"""
from __future__ import annotations

import argparse
import csv
import dataclasses
import os
import sys
import time
from multiprocessing import Pool
from pathlib import Path

import numpy as np

from processors.f0 import F0ExtractorUnavailable, check_f0_extractor, extract_f0
from processors.mel import mel_and_energy
from utils.audio import load_audio
from utils.config import load_config
from utils.paths import PROJECT_ROOT as ROOT
from utils.schema import PreprocessConfig

EXTRACTORS = ("parselmouth", "dio", "harvest", "pyin", "crepe_full", "crepe_tiny", "fcpe")


def _job(task: tuple[str, np.ndarray, PreprocessConfig]) -> float:
    """Mel+energy (and F0 unless kind is "mel+energy") of one clip; returns the CPU seconds used."""
    kind, wav, cfg = task
    start = time.process_time()
    mel, _ = mel_and_energy(wav, cfg)
    if kind != "mel+energy":
        extract_f0(wav, cfg.sample_rate, dataclasses.replace(cfg, f0_extractor=kind), mel.shape[1])
    return time.process_time() - start


def _init() -> None:
    import torch
    torch.set_num_threads(1)


def _noop(_: int) -> None:
    return None


def pick_files(data: Path, n: int) -> list[Path]:
    """The first ``n`` control takes of the manifest, cycling over singers."""
    with open(data / "manifest.tsv", encoding="utf-8") as f:
        rows = [r for r in csv.DictReader(f, delimiter="\t") if r["take"] == "control"]
    by_singer: dict[str, list[str]] = {}
    for r in rows:
        by_singer.setdefault(r["singer"], []).append(r["path"])
    order = [paths[i] for i in range(max(map(len, by_singer.values())))
             for paths in by_singer.values() if i < len(paths)]
    return [data / p for p in order[:n]]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default=str(ROOT / "egs/svc/DiffComoSVC/exp_config_demo.json"))
    parser.add_argument("--data", default=str(ROOT.parent / "shared/data/gtsinger_demo"))
    parser.add_argument("--files", type=int, default=4)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--kinds", nargs="+", default=["mel+energy", *EXTRACTORS])
    args = parser.parse_args()
    cfg = load_config(args.config, ["preprocess.content_features=[]"]).preprocess
    files = pick_files(Path(args.data), args.files)
    wavs = [load_audio(p, cfg.sample_rate) for p in files]
    seconds = sum(w.size for w in wavs) / cfg.sample_rate
    print(f"{len(files)} files, {seconds:.1f} s of audio at {cfg.sample_rate} Hz, "
          f"hop {cfg.hop_size}, {cfg.n_mel} mels; {os.cpu_count()} cores")
    print("seconds of audio per wall-clock second (per CPU second of the workers in brackets)")
    print(f"{'features':<12}" + "".join(f"{f'{w} worker(s)':>22}" for w in args.workers))
    for kind in args.kinds:
        if kind != "mel+energy":
            try:
                check_f0_extractor(dataclasses.replace(cfg, f0_extractor=kind))
            except F0ExtractorUnavailable as e:
                print(f"{kind:<12}  unavailable: {str(e).split(';')[0]}")
                continue
        _job((kind, wavs[0][: cfg.sample_rate], cfg))  # warm-up: imports, caches, numba compile
        speeds = []
        for workers in args.workers:
            with Pool(workers, initializer=_init) as pool:
                pool.map(_noop, range(workers))  # make sure every worker is up before timing
                start = time.perf_counter()
                cpu = sum(pool.map(_job, [(kind, w, cfg) for w in wavs], chunksize=1))
                speeds.append((seconds / (time.perf_counter() - start), seconds / cpu))
        print(f"{kind:<12}" + "".join(f"{w:>12.1f} ({c:5.1f}) s/s" for w, c in speeds), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
