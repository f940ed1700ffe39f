"""Feature parity of training and conversion (issue 27): for training takes of an experiment, what
stage 2 read from stage 1's cache against what conversion computes for the same file
(``SVCConverter``: ``acoustic_features`` of the file decoded at the model's rate, and
``content_features``, which resamples that to 16 kHz).

Per feature and take: the largest absolute difference, the mean cosine of frame vectors (content
features), and the frame offset that best lines the two sequences up (the lag in -8..8 frames
maximising the mean frame correlation; 0 means aligned). The mel normalisation is compared too: the
per-bin range (``mel_min`` / ``mel_max``) that training normalised with against the one conversion
denormalises with, for the take's singer.

    python3 bins/bench/feature_parity.py EXPERIMENT [--takes 5] [--output_tsv FILE]

EXPERIMENT: a trained experiment folder or checkpoint (its config names the stage 1 cache). The
takes are taken singer by singer (round robin over the training split).
Prints one TSV row per (take, feature).
"""
from __future__ import annotations

import argparse
import sys

import numpy as np

MAX_LAG = 8


def best_lag(a: np.ndarray, b: np.ndarray, max_lag: int = MAX_LAG) -> int:
    """Frame lag L in [-max_lag, max_lag] maximising the mean over frames t of corr(a[t], b[t + L]).

    Args: a, b: (T, D) or (T,) sequences on the same frame grid (the shorter length is used).
    Returns: L in frames; b is late by L frames when L > 0.
    """
    a = np.atleast_2d(np.asarray(a, np.float64).T).T
    b = np.atleast_2d(np.asarray(b, np.float64).T).T
    n = min(len(a), len(b))
    a, b = a[:n] - a[:n].mean(0), b[:n] - b[:n].mean(0)
    scores = {}
    for lag in range(-max_lag, max_lag + 1):
        x, y = (a[:n - lag], b[lag:]) if lag >= 0 else (a[-lag:], b[:n + lag])
        scores[lag] = float((x * y).sum() / (np.linalg.norm(x) * np.linalg.norm(y) + 1e-12))
    return max(scores, key=scores.get)


def mean_cosine(a: np.ndarray, b: np.ndarray) -> float:
    """Mean over frames of the cosine of (T, D) frame vectors a[t], b[t]."""
    num = (a * b).sum(1)
    den = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1) + 1e-12
    return float((num / den).mean())


def compare(name: str, trained: np.ndarray, converted: np.ndarray) -> dict:
    """One row: feature ``name`` of stage 1 (``trained``) against conversion's (``converted``),
    both (T, D) or (T,) on the mel frame grid."""
    t, c = np.asarray(trained, np.float64), np.asarray(converted, np.float64)
    row = {"feature": name, "frames": f"{len(t)}/{len(c)}"}
    n = min(len(t), len(c))
    row["max_abs_diff"] = float(np.abs(t[:n] - c[:n]).max())
    row["cosine"] = mean_cosine(t[:n], c[:n]) if t.ndim == 2 else float("nan")
    row["lag_frames"] = best_lag(t[:n], c[:n])
    return row


def round_robin(utts: list[dict]) -> list[dict]:
    """The utterances reordered singer by singer (each singer's first, then each one's second ...),
    so that the first N cover as many singers as possible."""
    by_singer: dict[str, list[dict]] = {}
    for u in utts:
        by_singer.setdefault(u["Singer"], []).append(u)
    longest = max((len(v) for v in by_singer.values()), default=0)
    return [v[i] for i in range(longest) for v in by_singer.values() if i < len(v)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("experiment")
    parser.add_argument("--takes", type=int, default=5, help="training takes to check")
    parser.add_argument("--output_tsv", help="also write the rows here")
    args = parser.parse_args(argv)

    from models.svc.registry import load_converter
    from processors.features import acoustic_features
    from utils.audio import load_audio
    from utils.io import load_json
    from utils.paths import resolve_path

    conv = load_converter(args.experiment, device="cpu")
    pcfg = conv.cfg.preprocess
    root = resolve_path(pcfg.processed_dir)
    rows = []
    for dataset in conv.cfg.dataset:
        stats_file = load_json(root / dataset / "statistics.json")
        for utt in round_robin(load_json(root / dataset / "train.json"))[:args.takes]:
            uid = utt["Uid"]
            cached = {f: np.load(root / dataset / folder / f"{uid}.npy") for f, folder in
                      [("mel", "mels"), ("f0", "pitches"), ("energy", "energys")]
                      + [(n, n) for n in pcfg.content_features]}
            cached["mel"] = cached["mel"].T
            wav = load_audio(resolve_path(utt["Path"]), pcfg.sample_rate)
            feats = acoustic_features(wav, pcfg)
            feats["mel"] = feats["mel"].T
            feats.update(conv.content_features(wav, len(feats["f0"])))
            for name in cached:
                rows.append({"uid": uid, **compare(name, cached[name], feats[name])})
            stats, _ = conv.singer_statistics(f"{dataset}_{utt['Singer']}")
            diff = max(float(np.abs(np.subtract(stats[k], stats_file[k])).max())
                       for k in ("mel_min", "mel_max"))
            rows.append({"uid": uid, "feature": "mel_range", "frames": "-", "max_abs_diff": diff,
                         "cosine": float("nan"), "lag_frames": 0})
    header = ["uid", "feature", "frames", "max_abs_diff", "cosine", "lag_frames"]
    lines = ["\t".join(header)] + ["\t".join(
        f"{r[k]:.4g}" if isinstance(r[k], float) else str(r[k]) for k in header) for r in rows]
    print("\n".join(lines))
    if args.output_tsv:
        from utils.io import atomic_write
        atomic_write(args.output_tsv, lambda p: p.write_text("\n".join(lines) + "\n"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
