"""Does the model use its content input? (issue 27) Self-reconstructs takes three ways, laid out for
``cantor eval`` (``<out>/<mode>/<Uid>/<Uid>_<singer>.wav``):

- ``normal``: as conversion does;
- ``zero``: every content feature set to 0 (F0, energy and singer unchanged);
- ``swap``: the content features of another take (the next one in the list, repeated or cut to
  this take's length).

If CER and content distance barely move between ``normal`` and the others, the output's words do
not come from the content input. With ``--whisper_path`` each mode's mean content distance to the
sources is printed (evaluation/content.py: Whisper encoder features, DTW-aligned; no
transcription, so it is cheap enough for unreadable outputs). Outputs already written are kept.

    python3 bins/bench/content_ablation.py EXPERIMENT --source data/.../train.json --out DIR
        [--takes 10] [--modes normal zero swap] [--set inference.comosvc.inference_steps=0]
        [--whisper_path pretrained/whisper/base.pt]
    cantor eval DIR/normal DIR/zero DIR/swap --source data/.../train.json --language auto \\
        --whisper_path pretrained/whisper/base.pt --copy_synthesis --config CFG
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

MODES = ("normal", "zero", "swap")


def fit_length(feats: np.ndarray, n_frames: int) -> np.ndarray:
    """(F, D) features tiled or cut to (n_frames, D)."""
    reps = -(-n_frames // len(feats))
    return np.tile(feats, (reps, 1))[:n_frames]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("experiment")
    parser.add_argument("--source", required=True, help="a stage-1 list (train.json / test.json)")
    parser.add_argument("--out", required=True)
    parser.add_argument("--takes", type=int, default=10)
    parser.add_argument("--modes", nargs="+", choices=MODES, default=list(MODES))
    parser.add_argument("--whisper_path", help="print each mode's mean content distance with this "
                        "Whisper checkpoint")
    parser.add_argument("--set", action="append", default=[], metavar="K=V",
                        help="conversion config override (repeatable)")
    args = parser.parse_args(argv)

    from models.svc.registry import load_converter
    from utils.audio import load_audio, save_wav
    from utils.io import load_json
    from utils.paths import resolve_path

    conv = load_converter(args.experiment, device="cpu", overrides=args.set)
    utts = load_json(args.source)[:args.takes]
    wavs = [load_audio(resolve_path(u["Path"]), conv.sample_rate) for u in utts]
    hop = conv.cfg.preprocess.hop_size
    own = [conv.content_features(w, len(w) // hop) for w in wavs]
    real_features = conv.content_features
    for mode in args.modes:
        for i, (utt, wav) in enumerate(zip(utts, wavs)):
            other = own[(i + 1) % len(own)]
            if mode == "normal":
                conv.content_features = real_features
            elif mode == "zero":
                conv.content_features = lambda w, n, f=own[i]: {k: np.zeros_like(v)
                                                                for k, v in f.items()}
            else:
                conv.content_features = lambda w, n, f=other: {k: fit_length(v, n)
                                                               for k, v in f.items()}
            singer = f"{utt['Dataset']}_{utt['Singer']}"
            path = output_path(args.out, mode, utt)
            if not path.is_file():
                out = conv.convert(wav, singer, 0.0, name=utt["Uid"])
                save_wav(path, out.wav, out.sample_rate)
        print(f"{mode}: {len(utts)} takes -> {Path(args.out) / mode}")
    if args.whisper_path:
        from evaluation.cer import WhisperTranscriber
        from evaluation.content import content_distance

        whisper = WhisperTranscriber(args.whisper_path)
        sources = [whisper.encode(load_audio(resolve_path(u["Path"]), 16000)) for u in utts]
        for mode in args.modes:
            d = [content_distance(whisper.encode(load_audio(output_path(args.out, mode, u), 16000)),
                                  src) for u, src in zip(utts, sources)]
            print(f"{mode}\tcontent_distance\t{np.mean(d):.4f}\tmedian\t{np.median(d):.4f}")
    return 0


def output_path(out: str, mode: str, utt: dict) -> Path:
    """Where ``mode``'s self-reconstruction of ``utt`` goes (cantor eval's layout)."""
    singer = f"{utt['Dataset']}_{utt['Singer']}"
    return Path(out) / mode / utt["Uid"] / f"{utt['Uid']}_{singer}.wav"


if __name__ == "__main__":
    sys.exit(main())
