"""F0 extractors: accuracy on a synthetic harmonic tone and alignment with the mel frames."""
from __future__ import annotations

import dataclasses
import importlib.util

import numpy as np
import pytest

from processors.f0 import F0ExtractorUnavailable, check_f0_extractor, extract_f0, to_mel_frames
from processors.features import acoustic_features
from processors.mel import n_mel_frames
from utils.schema import PreprocessConfig

SR, HOP = 22050, 256
LOW, HIGH = 220.0, 330.0
STEP_S = 0.8037  # the F0 jumps from LOW to HIGH here (deliberately not on a frame boundary)
OPTIONAL = {"crepe_full": "torchcrepe", "crepe_tiny": "torchcrepe", "fcpe": "torchfcpe"}
EXTRACTORS = ["parselmouth", "dio", "harvest", "pyin", "crepe_full", "crepe_tiny", "fcpe"]


def harmonic_tone(f0: np.ndarray, sr: int) -> np.ndarray:
    """Five harmonics (amplitude 1/k) of a per-sample F0 track, phase-continuous."""
    phase = 2 * np.pi * np.cumsum(f0) / sr
    return sum(0.3 / k * np.sin(k * phase) for k in range(1, 6)).astype(np.float32)


def step_tone(sr: int = SR, seconds: float = 1.6) -> np.ndarray:
    t = np.arange(int(seconds * sr)) / sr
    return harmonic_tone(np.where(t < STEP_S, LOW, HIGH), sr)


def config(extractor: str, **kw) -> PreprocessConfig:
    return PreprocessConfig(sample_rate=SR, n_mel=80, fmax=8000.0, f0_extractor=extractor, **kw)


@pytest.mark.parametrize("extractor", EXTRACTORS)
def test_step_tone_accuracy_and_alignment(extractor):
    if extractor in OPTIONAL and importlib.util.find_spec(OPTIONAL[extractor]) is None:
        pytest.skip(f"{OPTIONAL[extractor]} is not installed")
    wav = step_tone()
    n = n_mel_frames(wav.size, HOP)
    f0 = extract_f0(wav, SR, config(extractor), n)
    assert f0.shape == (n,) and f0.dtype == np.float32
    # Mel frame i is centred at i * hop + hop / 2, so the step sits at this fractional frame index.
    boundary = (STEP_S * SR - HOP / 2) / HOP
    inner_low = np.arange(8, int(boundary) - 5)
    inner_high = np.arange(int(boundary) + 7, n - 8)
    assert np.all(np.abs(f0[inner_low] / LOW - 1) < 0.01), f0[inner_low]
    assert np.all(np.abs(f0[inner_high] / HIGH - 1) < 0.01), f0[inner_high]
    # The transition's midpoint: the last frame still at LOW and the first already at HIGH.
    near = int(boundary)
    window = np.arange(near - 6, near + 8)
    last_low = window[np.abs(f0[window] / LOW - 1) < 0.01].max()
    first_high = window[np.abs(f0[window] / HIGH - 1) < 0.01].min()
    assert abs((last_low + first_high) / 2 - boundary) <= 1.0, (last_low, first_high, boundary)


def test_parselmouth_at_24k_keeps_the_frame_contract():
    sr = 24000
    cfg = dataclasses.replace(config("parselmouth"), sample_rate=sr, n_mel=100, fmax=12000.0)
    wav = step_tone(sr)
    n = n_mel_frames(wav.size, HOP)
    f0 = extract_f0(wav, sr, cfg, n)
    boundary = (STEP_S * sr - HOP / 2) / HOP
    switched = np.flatnonzero(f0 > (LOW + HIGH) / 2)[0]
    assert abs(switched - boundary) <= 1.0


def test_to_mel_frames_interpolates_only_between_voiced_frames():
    times = np.array([0.0, 0.01, 0.02, 0.03])
    f0 = np.array([0.0, 100.0, 200.0, 0.0])
    out = to_mel_frames(times, f0, np.array([-0.01, 0.004, 0.006, 0.015, 0.026, 0.05]))
    # before the track: edge (0); nearer the unvoiced frame: 0; nearer the voiced one: its value;
    # between two voiced frames: linear; after the track: edge (0).
    np.testing.assert_allclose(out, [0.0, 0.0, 100.0, 150.0, 0.0, 0.0])


def test_acoustic_features_share_one_frame_axis():
    wav = step_tone(seconds=0.7)
    feats = acoustic_features(wav, config("parselmouth"))
    t = wav.size // HOP
    assert feats["mel"].shape == (80, t) and feats["mel"].dtype == np.float32
    assert feats["energy"].shape == feats["f0"].shape == feats["uv"].shape == (t,)
    np.testing.assert_array_equal(feats["uv"], feats["f0"] == 0)
    assert np.median(feats["f0"][~feats["uv"]]) == pytest.approx(LOW, rel=0.01)


@pytest.mark.parametrize("extractor", ["crepe_full", "fcpe"])
def test_unimportable_neural_tracker_is_one_clear_error(extractor):
    if importlib.util.find_spec(OPTIONAL[extractor]) is not None:
        pytest.skip(f"{OPTIONAL[extractor]} is installed here")
    with pytest.raises(F0ExtractorUnavailable, match=f"{OPTIONAL[extractor]}.*torchaudio"):
        check_f0_extractor(config(extractor))
    with pytest.raises(F0ExtractorUnavailable):
        extract_f0(step_tone(seconds=0.5), SR, config(extractor), 40)
