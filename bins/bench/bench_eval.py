"""Calibration and speed of the evaluation metrics on real recordings (the GTSinger demo subset), so a
conversion's scores can be read against what real singing gets:

* speaker similarity (Resemblyzer): each singing take against the mean embedding of the same singer's
  other takes, and against each other singer's mean; how often the own singer wins;
* MCD between two takes of the same song by the same singer (control vs a technique take): the
  distortion of a genuine same-content recording;
* CER (Whisper tiny.en) between the transcripts of two takes of the same English song;
* seconds per file of each metric.

    python bins/bench/bench_eval.py [--data ../shared/data/gtsinger_demo] [--no_cer]

Run by hand on an idle machine (a few minutes on 2 cores); report the figures.
"""
from __future__ import annotations

import argparse
import csv
import itertools
import os
import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))


def singing_takes(data: Path) -> tuple[dict[str, dict[str, list[Path]]], float]:
    """({singer: {song: [take paths]}}, mean take length in seconds) of the manifest's singing."""
    takes: dict[str, dict[str, list[Path]]] = defaultdict(lambda: defaultdict(list))
    seconds = []
    with open(data / "manifest.tsv", newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f, delimiter="\t"):
            if row["kind"] == "singing":
                takes[row["singer"]][row["song"]].append(data / row["path"])
                seconds.append(float(row["seconds"]))
    return takes, float(np.mean(seconds))


def speaker_figures(takes, timings) -> None:
    from evaluation.speaker import EMBEDDING_RATE, SpeakerEncoder, cosine_similarity, mean_embedding
    from utils.audio import load_audio
    encoder = SpeakerEncoder("cpu")
    encoder.embed(load_audio(next(iter(next(iter(takes.values())).values()))[0], EMBEDDING_RATE))
    embeddings: dict[str, list[np.ndarray]] = {}
    start, n = time.perf_counter(), 0
    for singer, songs in takes.items():
        embeddings[singer] = [encoder.embed(load_audio(p, EMBEDDING_RATE))
                              for paths in songs.values() for p in paths]
        n += len(embeddings[singer])
    timings["speaker embedding (one take)"] = (time.perf_counter() - start) / n
    means = {s: mean_embedding(e) for s, e in embeddings.items()}
    own, other, wins = [], [], 0
    for singer, embs in embeddings.items():
        for i, e in enumerate(embs):
            own.append(cosine_similarity(e, mean_embedding(embs[:i] + embs[i + 1:])))
            others = [cosine_similarity(e, means[o]) for o in embeddings if o != singer]
            other.extend(others)
            wins += own[-1] > max(others)
    print(f"speaker similarity, take vs own singer's other takes: mean {np.mean(own):.3f} "
          f"(min {np.min(own):.3f}); vs other singers: mean {np.mean(other):.3f} "
          f"(max {np.max(other):.3f}); own singer closest for {wins} of {len(own)} takes")


def mcd_figures(takes, sample_rate: int, timings) -> None:
    from evaluation.mcd import mel_cepstral_distortion
    from utils.audio import load_audio
    values, start = [], time.perf_counter()
    for songs in takes.values():
        for paths in songs.values():
            for a, b in itertools.combinations(paths, 2):
                values.append(mel_cepstral_distortion(load_audio(a, sample_rate),
                                                      load_audio(b, sample_rate), sample_rate))
    timings["MCD (one pair)"] = (time.perf_counter() - start) / len(values)
    print(f"MCD between takes of the same song by the same singer: mean {np.mean(values):.2f} dB "
          f"(min {np.min(values):.2f}, max {np.max(values):.2f}) over {len(values)} pairs")


def f0_timing(takes, sample_rate: int, timings) -> None:
    from processors.f0 import extract_f0
    from processors.mel import n_mel_frames
    from utils.audio import load_audio
    from utils.schema import PreprocessConfig
    pcfg = PreprocessConfig(sample_rate=sample_rate)
    paths = [p for songs in takes.values() for ps in songs.values() for p in ps][:8]
    start = time.perf_counter()
    for p in paths:
        wav = load_audio(p, sample_rate)
        extract_f0(wav, sample_rate, pcfg, n_mel_frames(len(wav), pcfg.hop_size))
    timings["F0, parselmouth (one take)"] = (time.perf_counter() - start) / len(paths)


def cer_figures(takes, whisper_path: Path, timings) -> None:
    from evaluation.cer import WHISPER_RATE, WhisperTranscriber, character_error_rate
    from utils.audio import load_audio
    transcriber = WhisperTranscriber(whisper_path)
    english = {s: songs for s, songs in takes.items() if s.startswith("EN-")}
    rates, n, start = [], 0, time.perf_counter()
    for songs in english.values():
        for song, paths in songs.items():
            texts = [transcriber.transcribe(load_audio(p, WHISPER_RATE)) for p in paths]
            n += len(texts)
            for (pa, ta), (pb, tb) in itertools.combinations(zip(paths, texts), 2):
                rates.append(character_error_rate(ta, tb))
                print(f"  {song}: {pa.stem!r}: {ta!r} | {pb.stem!r}: {tb!r} -> CER {rates[-1]:.3f}")
    timings["Whisper tiny.en transcript (one take)"] = (time.perf_counter() - start) / n
    print(f"CER between transcripts of two takes of the same English song: mean {np.mean(rates):.3f} "
          f"over {len(rates)} pairs")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=Path(os.environ.get(
        "CANTOR_DEMO_DATA", ROOT.parent / "shared" / "data" / "gtsinger_demo")))
    parser.add_argument("--sample_rate", type=int, default=22050, help="F0 and MCD analysis rate")
    parser.add_argument("--whisper_path", type=Path, default=ROOT / "pretrained/whisper/tiny.en.pt")
    parser.add_argument("--no_cer", action="store_true", help="skip the Whisper figures")
    args = parser.parse_args()
    takes, seconds = singing_takes(args.data)
    timings: dict[str, float] = {}
    speaker_figures(takes, timings)
    mcd_figures(takes, args.sample_rate, timings)
    f0_timing(takes, args.sample_rate, timings)
    if not args.no_cer:
        cer_figures(takes, args.whisper_path, timings)
    print(f"seconds per call (takes average {seconds:.1f} s of audio):")
    for name, value in timings.items():
        print(f"  {name}: {value:.2f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
