"""Benchmark of consistency distillation (issue 6): acoustic-model wall time for one input of
``--seconds`` of real singing, teacher (``inference.comosvc.inference_steps`` solver steps) vs one-step
student, measured in one run, and how close the student's output is to the teacher's.

    python bins/bench/bench_distill.py --teacher ckpts/demo/demo_teacher --student ckpts/demo/demo_student
        [--seconds 10] [--repeats 3] [--threads 2]

Both experiments must share their condition encoder/encoder (a student distilled from that
teacher). Times are split into the encoder (condition encoder + Transformer -> mu, run once by
both) and the decoder (the denoiser evaluations: ``steps`` for the Euler teacher, 2 * steps - 1 for
Heun, 1 for the student). Closeness: mel L1 (normalised mels, masked) between the student's and the
teacher's outputs, and MCD (dB, DTW-aligned) between the two vocoded waveforms; the teacher's own
one-step output is given beside it for scale.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DEMO_SOURCE = ROOT.parent / "shared/data/gtsinger_demo/EN-Alto-2/en_vibrato/control.flac"


def timed(fn, repeats: int):
    """(result of the last call, best wall time of ``repeats`` calls in seconds)."""
    best, out = float("inf"), None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return out, best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--teacher", required=True, help="teacher experiment folder or checkpoint")
    parser.add_argument("--student", required=True, help="student experiment folder or export")
    parser.add_argument("--source", default=str(DEMO_SOURCE), help="audio to convert")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = parser.parse_args()

    import numpy as np
    import soxr
    import torch

    from evaluation.mcd import mel_cepstral_distortion
    from models.base.dataset import denormalize_mel
    from models.base.chunking import Chunk
    from models.svc.comosvc.inference import ComoSVCConverter
    from processors.content import CONTENT_SAMPLE_RATE
    from processors.features import acoustic_features
    from utils.audio import load_audio

    if args.threads:
        torch.set_num_threads(args.threads)
    teacher = ComoSVCConverter.from_experiment(args.teacher, device="cpu")
    student = ComoSVCConverter.from_experiment(args.student, device="cpu")
    if teacher.student or not student.student:
        raise SystemExit("--teacher must hold a teacher and --student a distilled student")
    cfg = teacher.cfg.preprocess
    wav = load_audio(args.source, cfg.sample_rate)
    wav = np.tile(wav, int(np.ceil(args.seconds * cfg.sample_rate / len(wav))))
    wav = wav[:int(args.seconds * cfg.sample_rate)]
    singer = next(iter(teacher.singers))

    # One batch of the whole input through the converter's own feature path.
    feats = acoustic_features(wav, cfg)
    n = len(feats["f0"])
    wav16 = soxr.resample(wav, cfg.sample_rate, CONTENT_SAMPLE_RATE, quality="HQ")
    content = {k: ex.extract([wav16], [n])[0] for k, ex in teacher.extractors.items()}
    batch = teacher._batch([Chunk(0, n)], feats["f0"], feats["energy"], content,
                           teacher.singers[singer])

    steps = teacher.steps
    with torch.no_grad():
        mu, t_enc = timed(lambda: teacher.model.encode(batch), args.repeats)
        gen = lambda: torch.Generator().manual_seed(0)  # noqa: E731
        t_mel, t_teacher = timed(lambda: teacher.model.sample(batch, steps=steps, generator=gen())["mel"],
                                 args.repeats)
        s_mel, t_student = timed(lambda: student.model.sample(batch, steps=1, student=True,
                                                              generator=gen())["mel"], args.repeats)
        t1_mel = teacher.model.sample(batch, steps=1, generator=gen())["mel"]
    sampler = teacher.cfg.inference.comosvc.sampler
    evals = steps if sampler == "euler" else 2 * steps - 1
    dec_teacher, dec_student = t_teacher - t_enc, t_student - t_enc
    l1 = lambda a, b: float((a - b).abs().mean())  # noqa: E731

    stats = teacher.singer_statistics(singer)[0]
    lo = torch.tensor(stats["mel_min"]); hi = torch.tensor(stats["mel_max"])
    vocode = lambda m: teacher.vocoder(denormalize_mel(m, lo, hi)).numpy()[0]  # noqa: E731
    wav_t, wav_s, wav_1 = vocode(t_mel), vocode(s_mel), vocode(t1_mel)
    print(f"input {args.seconds:g} s ({n} frames), CPU, {torch.get_num_threads()} threads, best of "
          f"{args.repeats}")
    print(f"encoder (mu) {t_enc:.3f} s")
    print(f"teacher {steps} {sampler} steps ({evals} evaluations): {t_teacher:.3f} s "
          f"(decoder {dec_teacher:.3f} s)")
    print(f"student 1 step (1 evaluation): {t_student:.3f} s (decoder {dec_student:.3f} s)")
    print(f"ratio teacher/student: acoustic model {t_teacher / t_student:.1f}x, decoder alone "
          f"{dec_teacher / max(dec_student, 1e-9):.1f}x")
    print(f"student vs teacher: mel L1 {l1(s_mel, t_mel):.3f}, MCD "
          f"{mel_cepstral_distortion(wav_s, wav_t, cfg.sample_rate):.2f} dB")
    print(f"teacher 1 step vs teacher: mel L1 {l1(t1_mel, t_mel):.3f}, MCD "
          f"{mel_cepstral_distortion(wav_1, wav_t, cfg.sample_rate):.2f} dB")


if __name__ == "__main__":
    main()
