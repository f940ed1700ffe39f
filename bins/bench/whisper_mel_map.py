"""How close Cantor's mel mapped to Whisper's input (processors/content/whisper_mel.py) is to
Whisper's own log-mel of the same audio, on real takes (issue 27): per take the mean absolute
difference of the two log-mels (Whisper's (x + 4) / 4 units) and the mean frame cosine of the
Whisper encoder's features of each (the final output and every block's), both at the take's own
length. The control row compares Whisper's log-mel of the take with that of the take resampled
through Cantor's sample rate (what conversion's 16 kHz path does).

    python3 bins/bench/whisper_mel_map.py --config CFG [--split test] [--takes 10]
        [--whisper_path pretrained/whisper/tiny.en.pt]
"""
from __future__ import annotations

import argparse
import sys

import numpy as np


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--config", required=True)
    parser.add_argument("--split", default="test")
    parser.add_argument("--takes", type=int, default=10)
    parser.add_argument("--whisper_path", default="pretrained/whisper/tiny.en.pt")
    args = parser.parse_args(argv)

    import soxr
    import torch
    import whisper

    from processors.content.whisper import encoder_features, load_whisper_encoder
    from processors.content.whisper_mel import WhisperMel
    from processors.mel import mel_spectrogram
    from utils.audio import load_audio
    from utils.config import load_config
    from utils.io import load_json
    from utils.paths import resolve_path

    cfg = load_config(args.config)
    pcfg = cfg.preprocess
    mapper = WhisperMel(pcfg)
    encoder = load_whisper_encoder(resolve_path(args.whisper_path)).eval()
    n_blocks = len(encoder.blocks)
    root = resolve_path(pcfg.processed_dir)
    rows = {"mapped": [], "control": []}
    for dataset in cfg.dataset:
        for utt in load_json(root / dataset / f"{args.split}.json")[:args.takes]:
            path = resolve_path(utt["Path"])
            wav16 = load_audio(path, 16000)[:30 * 16000]
            wav = load_audio(path, pcfg.sample_rate)[:30 * pcfg.sample_rate]
            ref = whisper.log_mel_spectrogram(torch.from_numpy(wav16))
            mel = mel_spectrogram(wav, pcfg)[None]
            mapped, _ = mapper(mel, torch.ones(1, mel.shape[-1], dtype=torch.bool))
            via = soxr.resample(wav, pcfg.sample_rate, 16000, quality="HQ").astype(np.float32)
            control = whisper.log_mel_spectrogram(torch.from_numpy(via))[None]
            for name, x in (("mapped", mapped), ("control", control)):
                m = min(x.shape[-1], ref.shape[-1]) // 2 * 2
                a, r = x[..., :m], ref[None, :, :m]
                row = [float((a - r).abs().mean())]
                with torch.inference_mode():
                    for layer in [0] + list(range(1, n_blocks + 1)):
                        fa, fr = encoder_features(encoder, a, layer), encoder_features(encoder, r, layer)
                        row.append(float(torch.nn.functional.cosine_similarity(fa, fr, -1).mean()))
                rows[name].append(row)
    header = ["input", "takes", "logmel_mad", "cos_final"] + [f"cos_block{k}" for k in
                                                             range(1, n_blocks + 1)]
    print("\t".join(header))
    for name, r in rows.items():
        mean = np.mean(r, axis=0)
        print("\t".join([name, str(len(r))] + [f"{v:.4f}" for v in mean]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
