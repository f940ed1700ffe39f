"""Which mel convention does the universal HiFi-GAN V1 expect? Resynthesis check (issue 9, item 2).

For each variant (log clamp 1e-5 / 1e-7; magnitude sqrt(|S|^2 + 1e-9) or plain |S|; HiFi-GAN's
(n_fft - hop) / 2 reflect padding with center=False, or torch's center=True), real demo clips
(one per singer, resampled to 22 050 Hz) are turned into that variant's log-mel, vocoded with the
universal generator, and the variant's log-mel of the result is compared with the input: mean
absolute log-mel error (natural log), lower = the generator understands that convention better.
The same resynthesis is also scored with processors/mel.py's own mel ("common" column), so that
the floor of a smaller clamp does not by itself inflate a variant's figure.

With ``pretrained/whisper/tiny.en.pt`` present it also transcribes an English speech clip and its
resynthesis with Whisper tiny.en.

    python bins/bench/mel_convention.py [--seconds 4] [--demo ../shared/data/gtsinger_demo]
"""
from __future__ import annotations

import argparse
import csv
import itertools
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SPEECH_CLIP = "EN-Alto-2/en_breathy/speech.flac"


def variant_log_mel(wav, pre, clamp: float, eps: float, center: bool):
    """Log-mel (n_mel, T) of a 1-D tensor in one convention; (1e-5, 1e-9, False) is
    processors/mel.py's."""
    import librosa
    import torch
    window = torch.hann_window(pre.win_size)
    if center:
        x = wav
    else:
        pad = (pre.n_fft - pre.hop_size) // 2
        x = torch.nn.functional.pad(wav[None, None], (pad, pad), mode="reflect")[0, 0]
    spec = torch.stft(x, pre.n_fft, hop_length=pre.hop_size, win_length=pre.win_size, window=window,
                      center=center, pad_mode="reflect", return_complex=True)
    mag = torch.sqrt(spec.real.pow(2) + spec.imag.pow(2) + eps)
    basis = torch.from_numpy(librosa.filters.mel(sr=pre.sample_rate, n_fft=pre.n_fft,
                                                 n_mels=pre.n_mel, fmin=pre.fmin, fmax=pre.fmax))
    return torch.log(torch.clamp(basis @ mag, min=clamp))


def pick_clips(demo: Path) -> list[Path]:
    """The first singing take of each singer in manifest.tsv."""
    seen, clips = set(), []
    with open(demo / "manifest.tsv", encoding="utf-8") as f:
        for row in csv.DictReader(f, delimiter="\t"):
            if row["kind"] == "singing" and row["singer"] not in seen:
                seen.add(row["singer"])
                clips.append(demo / row["path"])
    return clips


def transcribe(path: Path, wavs: dict) -> dict:
    """Whisper tiny.en transcripts of 16 kHz waveforms (name -> text)."""
    import whisper
    model = whisper.load_model(str(path), device="cpu")
    return {name: model.transcribe(w, fp16=False, language="en")["text"].strip()
            for name, w in wavs.items()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--demo", type=Path,
                        default=ROOT.parent / "shared" / "data" / "gtsinger_demo")
    parser.add_argument("--seconds", type=float, default=4.0, help="length of each clip (s)")
    parser.add_argument("--offset", type=float, default=1.0, help="start of each clip (s)")
    args = parser.parse_args()

    import numpy as np
    import soxr
    import torch
    from tqdm import tqdm

    from models.vocoders import load_vocoder
    from processors.mel import mel_spectrogram
    from utils.audio import load_audio
    from utils.config import load_config

    cfg = load_config(ROOT / "egs" / "svc" / "DiffComoSVC" / "exp_config_demo.json")
    pre = cfg.preprocess
    vocoder = load_vocoder(cfg)
    n = int(args.seconds * pre.sample_rate) // pre.hop_size * pre.hop_size
    start = int(args.offset * pre.sample_rate)
    clips = pick_clips(args.demo)
    wavs = torch.stack([torch.from_numpy(load_audio(c, pre.sample_rate)[start:start + n])
                        for c in clips])
    reference = variant_log_mel(wavs[0], pre, 1e-5, 1e-9, False)
    assert torch.allclose(reference, mel_spectrogram(wavs[0], pre), atol=1e-5), \
        "the reference variant must be processors/mel.py"

    below = (variant_log_mel(wavs.reshape(-1), pre, 0.0, 0.0, False) < np.log(1e-5)).float().mean()
    variants = list(itertools.product((1e-5, 1e-7), (1e-9, 0.0), (False, True)))
    rows = []
    for clamp, eps, center in tqdm(variants, desc="variants"):
        mels = torch.stack([variant_log_mel(w, pre, clamp, eps, center) for w in wavs])
        out = vocoder(mels)
        own, common = [], []
        for w, y, m in zip(wavs, out, mels):
            m2 = variant_log_mel(y, pre, clamp, eps, center)[:, :m.shape[1]]
            own.append((m2 - m).abs().mean().item())
            c_in, c_out = mel_spectrogram(w, pre), mel_spectrogram(y[:n], pre)
            common.append((c_out - c_in).abs().mean().item())
        rows.append((clamp, eps, center, float(np.mean(own)), float(np.mean(common))))

    print(f"\n{len(clips)} clips x {n / pre.sample_rate:.2f} s at {pre.sample_rate} Hz, universal "
          f"HiFi-GAN V1; {100 * below:.3f} % of the input mel bins lie below 1e-5; "
          f"mean |log-mel error|")
    print(f"{'clamp':>7} {'mag eps':>8} {'center':>7} {'own mel':>8} {'common':>8}")
    for clamp, eps, center, own, common in sorted(rows, key=lambda r: r[3]):
        print(f"{clamp:>7.0e} {eps:>8.0e} {str(center):>7} {own:>8.4f} {common:>8.4f}")

    whisper_path = ROOT / "pretrained" / "whisper" / "tiny.en.pt"
    if whisper_path.is_file():
        speech = load_audio(args.demo / SPEECH_CLIP, pre.sample_rate)
        speech = speech[:len(speech) // pre.hop_size * pre.hop_size]
        resynth = vocoder(mel_spectrogram(speech, pre)[None])[0].numpy()
        texts = transcribe(whisper_path, {
            "original": soxr.resample(speech, pre.sample_rate, 16000),
            "resynthesis": soxr.resample(resynth, pre.sample_rate, 16000)})
        for name, text in texts.items():
            print(f"whisper tiny.en, {name}: {text}")
    else:
        print(f"({whisper_path} absent: transcript check skipped)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
