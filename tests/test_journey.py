"""From long recordings to a model in one command: the slicer on hand-made signals, then
``cantor prepare`` -> ``cantor train`` -> ``cantor infer`` on two real singers, and fine-tuning a
third singer onto that base (a tiny model in the real on-disk formats)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from cantor.cli import main as cantor
from processors.slicer import SliceSettings, slice_audio
from tests.inference_fixtures import write_hifigan, write_whisper
from utils.audio import load_audio, save_wav

SR = 22050


def tone(seconds: float, amp: float = 0.3) -> np.ndarray:
    t = np.arange(int(seconds * SR)) / SR
    return (amp * np.sin(2 * np.pi * 220 * t)).astype(np.float32)


def test_slicer_cuts_at_silences_keeps_bounds_and_drops_silence():
    gap = np.zeros(int(0.6 * SR), np.float32)
    quiet = 1e-4 * np.ones(int(2.0 * SR), np.float32)      # -80 dBFS: silence
    wav = np.concatenate([gap, tone(4), gap, tone(1), gap, tone(5), quiet, tone(40)])
    s = SliceSettings(min_length=3.0, max_length=15.0)
    clips = [(a / SR, b / SR) for a, b in slice_audio(wav, SR, s)]
    lengths = [b - a for a, b in clips]
    assert all(3.0 - 0.02 <= n <= 15.0 + 0.02 for n in lengths), lengths
    # Layout (s): silence 0-0.6, tone 0.6-4.6, gap 4.6-5.2, tone 5.2-6.2, gap 6.2-6.8, tone 6.8-11.8,
    # quiet 11.8-13.8, tone 13.8-53.8. 0.5 s of the leading silence is kept; the first gap is cut;
    # a cut in the second gap would close a 1.6 s clip, so it stays inside; the 2 s quiet part is
    # removed but for 0.5 s on each side; the 40 s tone is split into clips of at most 15 s.
    assert clips[0] == pytest.approx((0.1, 4.6), abs=0.03)
    assert clips[1] == pytest.approx((4.6, 12.3), abs=0.03)
    assert clips[2][0] == pytest.approx(13.3, abs=0.03) and clips[-1][1] == pytest.approx(53.8, abs=0.01)
    assert all(a[1] == b[0] for a, b in zip(clips[2:], clips[3:]))   # the long tone is all kept
    assert len(clips) >= 5
    assert slice_audio(np.zeros(SR * 3, np.float32), SR, s) == []
    with pytest.raises(ValueError, match="twice min_length"):
        slice_audio(wav, SR, SliceSettings(min_length=10, max_length=15))


@pytest.fixture(scope="module")
def journey(tmp_path_factory, demo_data):
    root = tmp_path_factory.mktemp("journey")
    write_whisper(root / "whisper.pt")
    write_hifigan(root / "hifigan")
    raw = root / "raw"
    for singer in ("EN-Alto-2", "ZH-Tenor-1", "ZH-Alto-1"):
        takes = sorted((demo_data / singer).glob("*/control.flac"))[:3]
        long = np.concatenate([load_audio(t, SR) for t in takes])
        save_wav(raw / singer / "session" / "long.wav", long, SR)
    (raw / "EN-Alto-2" / "broken.wav").write_bytes(b"RIFF not a wav")
    tiny = [f"preprocess.whisper_path={root / 'whisper.pt'}", "model.condition_encoder.whisper_dim=16",
            f"vocoder.path={root / 'hifigan' / 'generator.pth'}", "vocoder.backend=torch",
            "vocoder.precision=fp32", "model.comosvc.input_dim=32",
            "model.comosvc.n_layers=1", "model.comosvc.filter_channels=32",
            "model.comosvc.n_res_blocks=2", "model.comosvc.residual_channels=32",
            "train.batch_size=4", "train.max_frames=64", "train.valid_every_steps=1000",
            "train.save_every_steps=2", "preprocess.num_workers=1"]
    return root, raw, [a for s in tiny for a in ("--set", s)]


def test_prepare_train_infer_and_finetune(journey, capsys):
    root, raw, tiny = journey
    clips = root / "clips"
    assert cantor(["prepare", str(root / "nowhere"), "-o", str(root / "x")]) == 2
    assert cantor(["prepare", str(raw), "-o", str(clips), "--sample-rate", str(SR)]) == 1
    out = capsys.readouterr()
    assert "broken.wav" in out.err and "EN-Alto-2:" in out.out and "ZH-Tenor-1:" in out.out
    lengths = [sf.info(str(f)).duration for f in clips.rglob("*.wav")]
    assert len(lengths) >= 6 and all(2.9 <= n <= 15.05 for n in lengths), lengths

    # Two singers from scratch (the third, ZH-Alto-1, is held back for fine-tuning).
    base_clips = root / "base_clips"
    for singer in ("EN-Alto-2", "ZH-Tenor-1"):
        (base_clips / singer).parent.mkdir(parents=True, exist_ok=True)
        (base_clips / singer).symlink_to(clips / singer, target_is_directory=True)
    logs = root / "ckpts"
    args = ["train", str(base_clips), "--preset", "demo", "--steps", "4", "--log-root", str(logs),
            *tiny]
    assert cantor(args) == 0
    printed = capsys.readouterr().out
    assert f"-m {logs / 'base_clips' / 'student'} -s base_clips_EN-Alto-2" in printed
    exp = logs / "base_clips"
    assert json.loads((exp / "teacher" / "args.json").read_text())["train"]["max_steps"] == 4
    assert (exp / "student" / "export").is_dir()
    assert cantor(args) == 0                           # a finished run returns at once
    song = sorted(clips.rglob("*.wav"))[0]
    wav_out = root / "out.wav"
    assert cantor(["infer", str(song), "-m", str(exp / "student"), "-s", "base_clips_ZH-Tenor-1",
                   "--autoshift", "-o", str(wav_out)]) == 0
    assert sf.info(str(wav_out)).frames == sf.info(str(song)).frames

    # Fine-tune a new singer onto the base teacher: old ids keep their meaning.
    new_clips = root / "new_clips"
    new_clips.mkdir()
    (new_clips / "ZH-Alto-1").symlink_to(clips / "ZH-Alto-1", target_is_directory=True)
    assert cantor(["train", str(new_clips), "--base", str(exp / "teacher"), "--steps", "2",
                   "--log-root", str(logs)]) == 0
    base_singers = json.loads((exp / "processed" / "singers.json").read_text())
    singers = json.loads((logs / "new_clips" / "processed" / "singers.json").read_text())
    assert {k: singers[k] for k in base_singers} == base_singers
    assert singers["new_clips_ZH-Alto-1"] == max(base_singers.values()) + 1
    for target in ("new_clips_ZH-Alto-1", "base_clips_EN-Alto-2"):
        assert cantor(["infer", str(song), "-m", str(logs / "new_clips" / "student"), "-s", target,
                       "-o", str(root / f"{target}.wav")]) == 0
        assert sf.info(str(root / f"{target}.wav")).frames == sf.info(str(song)).frames


def test_train_names_missing_content_weights_in_one_line(journey, capsys):
    root, _, tiny = journey
    clips = root / "clips_missing"
    save_wav(clips / "EN-Alto-2" / "song" / "0.wav", tone(4.0), SR)
    missing = root / "no_such_whisper.pt"
    args = ["train", str(clips), "--preset", "demo", "--steps", "2", "--log-root",
            str(root / "ckpts_missing"), *tiny, "--set", f"preprocess.whisper_path={missing}"]
    assert cantor(args) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"train: pretrained weights not found: {missing}")
    assert "preprocess.whisper_path" in err and "Traceback" not in err
