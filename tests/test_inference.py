"""Stage 3 conversion: chunk planning and crossfade joins, key-shift and autoshift arithmetic, and
end-to-end conversion of real demo singing with a tiny random-weight experiment written in the real
checkpoint format (random-weight Whisper in openai's format, random-weight HiFi-GAN with its
config.json), through the converter and both command lines."""
from __future__ import annotations

import argparse
import json
import logging
import math

import numpy as np
import pytest
import soundfile as sf

from models.base.chunking import Chunk, CrossfadeJoiner, plan_chunks
from processors.pitch_shift import autoshift_semitones, clamp_f0, shift_f0, voiced_median
from utils.paths import PROJECT_ROOT

from tests.inference_fixtures import (HOP, SR, conversion_test_config, write_conversion_setup,
                                      write_experiment)


# --- chunking and joins -------------------------------------------------------------------------

def test_plan_chunks_cuts_in_the_quietest_allowed_stretch():
    energy = np.ones(1000)
    # The first cut may fall in frames [45, 90] (step = 100 - 10, at least half a step): a V-shaped
    # dip centred on frame 72 is there; the silence at 93-97 is quieter but too far.
    energy[60:85] = 0.001 + 0.01 * np.abs(np.arange(60, 85) - 72)
    energy[93:98] = 0.0
    chunks = plan_chunks(energy, max_frames=100, overlap_frames=10)
    assert chunks[0] == Chunk(0, 72 + 5)          # cut on the dip, plus half the overlap
    assert chunks[1].start == 72 - 5
    assert all(c.n_frames <= 100 for c in chunks)
    assert all(a.end - b.start == 10 for a, b in zip(chunks, chunks[1:]))   # exact overlaps
    assert chunks[-1].end == 1000 and chunks[0].start == 0
    assert plan_chunks(energy[:100], 100, 10) == [Chunk(0, 100)]
    with pytest.raises(ValueError, match="too long"):
        plan_chunks(energy, max_frames=100, overlap_frames=40)


def _max_jump_at_joins(out: np.ndarray, chunks: list[Chunk], hop: int) -> tuple[float, float]:
    """(largest |x[n+1] - x[n]| inside the joins' overlaps, largest elsewhere)."""
    jump = np.abs(np.diff(out))
    at_join = np.zeros(jump.size, dtype=bool)
    for a, b in zip(chunks, chunks[1:]):
        at_join[b.start * hop - 1:a.end * hop] = True
    return float(jump[at_join].max()), float(jump[~at_join].max())


def test_crossfade_join_has_no_click_where_a_hard_cut_has_one():
    # Each "converted" chunk is the same 220 Hz tone with its own phase, as independently
    # generated chunks are: a hard cut jumps, the crossfade must not.
    hop, n = 64, 2000
    chunks = plan_chunks(np.ones(n), max_frames=300, overlap_frames=20)
    t = np.arange(n * hop) / 16000
    pieces = [0.5 * np.sin(2 * np.pi * 220 * t[c.start * hop:c.end * hop] + 1.3 * k).astype(np.float32)
              for k, c in enumerate(chunks)]
    joiner = CrossfadeJoiner(chunks, hop)
    for k in reversed(range(len(chunks))):   # any order
        joiner.add(k, pieces[k])
    at_join, elsewhere = _max_jump_at_joins(joiner.output, chunks, hop)
    # y = (1 - r) a + r b steps by at most max(|da|, |db|) + |dr| |b - a|: the fade's steepest step
    # is pi / (2 L) over L = 20 * 64 samples, and |b - a| <= 1 here (0.1 % of full scale).
    assert at_join <= elsewhere + np.pi / (2 * 20 * hop) * 1.0
    hard = np.zeros(n * hop, dtype=np.float32)
    for k, c in enumerate(chunks):
        hard[c.start * hop:c.end * hop] = pieces[k]
    assert _max_jump_at_joins(hard, chunks, hop)[0] > 2 * elsewhere
    # Equal pieces join to exactly themselves (weights sum to 1).
    ones = CrossfadeJoiner(chunks, hop)
    for k, c in enumerate(chunks):
        ones.add(k, np.ones(c.n_frames * hop, dtype=np.float32))
    np.testing.assert_allclose(ones.output, 1.0, atol=1e-6)
    with pytest.raises(ValueError, match="expected"):
        ones.add(0, np.ones(5, dtype=np.float32))


# --- pitch arithmetic ---------------------------------------------------------------------------

def test_key_shift_arithmetic():
    f0 = np.array([0.0, 100.0, 220.0, 0.0, 440.0], dtype=np.float32)
    np.testing.assert_allclose(shift_f0(f0, 12), [0, 200, 440, 0, 880], rtol=1e-6)
    np.testing.assert_allclose(shift_f0(f0, -12), [0, 50, 110, 0, 220], rtol=1e-6)
    np.testing.assert_allclose(shift_f0(f0, 7)[1], 149.83071, rtol=1e-6)   # 100 * 2^(7/12)
    np.testing.assert_allclose(shift_f0(f0, 0), f0)


def test_autoshift_against_hand_computed_medians(caplog):
    f0 = np.array([0, 0, 110, 220, 440, 0, 165], dtype=np.float32)
    assert voiced_median(f0) == 192.5                 # voiced 110, 165, 220, 440 -> (165 + 220) / 2
    # 12 * log2(330 / 192.5) = 12 * log2(1.7142857) = 9.33129...
    assert autoshift_semitones(f0, 330.0, round_to_semitone=False) == pytest.approx(9.33129, abs=1e-4)
    assert autoshift_semitones(f0, 330.0, round_to_semitone=True) == 9.0
    assert autoshift_semitones(f0, 96.25, round_to_semitone=False) == pytest.approx(-12.0)
    with caplog.at_level(logging.WARNING):
        assert autoshift_semitones(np.zeros(10), 330.0, True) == 0.0
    assert "no voiced frame" in caplog.text


def test_f0_outside_the_range_is_clamped_with_a_warning(caplog):
    with caplog.at_level(logging.WARNING):
        out = clamp_f0(np.array([0, 30, 200, 2000], dtype=np.float32), 50, 1100, "song.wav F0")
    np.testing.assert_array_equal(out, [0, 50, 200, 1100])
    assert "song.wav F0: 2 of 3 voiced frames" in caplog.text


@pytest.fixture(scope="module")
def setup(tmp_path_factory, demo_data):
    root = tmp_path_factory.mktemp("conversion")
    clip = write_conversion_setup(root, demo_data)
    write_experiment(root / "student", root, clip, student=True)
    (root / "songs" / "broken.wav").write_bytes(b"RIFF not really a wav file")
    return root, clip


@pytest.fixture(scope="module")
def teacher(setup):
    from models.svc.comosvc.inference import ComoSVCConverter
    root, _ = setup
    return ComoSVCConverter.from_experiment(root / "teacher", "cpu")


def test_end_to_end_length_and_joins(teacher, setup):
    _, clip = setup
    result = teacher.convert(clip, "demo_A", 3, name="clip")
    assert not teacher.student and teacher.steps == 1
    assert result.wav.shape == clip.shape and result.sample_rate == SR
    assert result.key_shift == 3.0
    assert np.all(np.isfinite(result.wav)) and result.wav.std() > 1e-4
    assert len(result.chunks) >= 3               # 3 s in chunks of at most 1.2 s
    at_join, elsewhere = _max_jump_at_joins(result.wav, result.chunks, HOP)
    assert at_join <= elsewhere
    assert teacher.timings.audio >= len(clip) / SR and teacher.timings.acoustic > 0


def test_autoshift_end_to_end_matches_target_median(teacher):
    t = np.arange(int(1.5 * SR)) / SR
    tone = (0.3 * np.sin(2 * np.pi * 200.0 * t)).astype(np.float32)   # median F0 200 Hz
    result = teacher.convert(tone, "demo_B", "autoshift")               # target median 400 Hz
    assert result.key_shift == 12.0
    assert result.wav.shape == tone.shape


def test_silent_input_gives_silence_of_the_same_length(teacher):
    silence = np.zeros(int(1.3 * SR) + 100, dtype=np.float32)
    result = teacher.convert(silence, "demo_A", "autoshift")
    assert result.wav.shape == silence.shape and not result.wav.any()


def test_unknown_singer_error_lists_the_known_ones(teacher, setup, capsys):
    from bins import infer
    from models.base.converter import UnknownSingerError
    with pytest.raises(UnknownSingerError, match="demo_A, demo_B"):
        teacher.check_target("nobody")
    root, _ = setup
    parser = argparse.ArgumentParser()
    infer.add_arguments(parser)
    args = parser.parse_args([str(root / "songs/alto/take.wav"), "-m", str(root / "teacher"),
                              "-s", "nobody"])
    assert infer.run(args) == 2
    assert "unknown target singer 'nobody'" in capsys.readouterr().err


def test_cantor_infer_writes_16_bit_audio_of_the_input_length(setup, tmp_path, capsys):
    from bins import infer
    root, clip = setup
    parser = argparse.ArgumentParser()
    infer.add_arguments(parser)
    out = tmp_path / "out.wav"
    args = parser.parse_args([str(root / "songs/alto/take.wav"), "-m", str(root / "teacher"),
                              "-s", "demo_B", "-t", "-2", "-o", str(out), "--steps", "2"])
    assert infer.run(args) == 0
    info = sf.info(str(out))
    assert info.samplerate == SR and info.frames == len(clip) and info.subtype == "PCM_16"
    assert "real-time factor" in capsys.readouterr().out


def test_stage3_unreadable_source_fails_alone(setup, tmp_path, capsys):
    from bins.svc import inference as stage3
    root, clip = setup
    parser = argparse.ArgumentParser()
    stage3.add_arguments(parser)
    args = parser.parse_args([
        "--infer_expt_dir", str(root / "teacher"), "--infer_output_dir", str(tmp_path),
        "--infer_source_audio_dir", str(root / "songs"), "--infer_target_speaker", "demo_A",
        "--infer_key_shift", "autoshift", "--set", "inference.chunk_seconds=1.5"])
    assert stage3.run(args) == 1
    err = capsys.readouterr().err
    assert "broken.wav" in err
    converted = tmp_path / "alto_take" / "alto_take_demo_A.wav"
    assert sf.info(str(converted)).frames == len(clip)
    assert not (tmp_path / "broken").exists()


def test_student_is_learned_from_the_checkpoint(setup, caplog):
    from models.svc.comosvc.inference import ComoSVCConverter
    root, clip = setup
    # The user's config says teacher (distill false) with another encoder depth and 7 student
    # steps; the checkpoint decides the model, the user the inference settings.
    user = conversion_test_config(root, "model.comosvc.n_layers=3", "inference.comosvc.student_inference_steps=3")
    with caplog.at_level(logging.WARNING):
        student = ComoSVCConverter.from_experiment(root / "student", "cpu", user,
                                               ["model.comosvc.n_layers=5"])
    assert student.student and student.steps == 3
    assert student.cfg.model.comosvc.n_layers == 1
    assert "differs from the checkpoint's in model.comosvc.n_layers" in caplog.text
    assert "--set model.comosvc.n_layers=5 ignored" in caplog.text
    result = student.convert(clip[:SR], "demo_B", 0)
    assert result.wav.shape == (SR,) and np.all(np.isfinite(result.wav))


def test_key_shift_argument_parsing():
    from bins.svc.inference import key_shift
    assert key_shift("autoshift") == "autoshift" and key_shift("-3") == -3
    with pytest.raises(argparse.ArgumentTypeError, match="semitones"):
        key_shift("1.5")
    assert math.isclose(2 ** (-3 / 12) * 440, shift_f0(np.array([440.0]), key_shift("-3"))[0],
                        rel_tol=1e-6)


def test_source_lists_from_a_folder_and_a_test_json(tmp_path):
    from bins.svc.inference import audio_dir_sources, json_file_sources
    for rel in ("b/take.flac", "a/take.wav", "a/notes.txt", "top.MP3"):
        (tmp_path / "src" / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "src" / rel).write_bytes(b"")
    assert audio_dir_sources(tmp_path / "src") == [
        ("a_take", tmp_path / "src/a/take.wav"), ("b_take", tmp_path / "src/b/take.flac"),
        ("top", tmp_path / "src/top.MP3")]
    (tmp_path / "src/top.ogg").write_bytes(b"")
    with pytest.raises(ValueError, match="both be written as 'top'"):
        audio_dir_sources(tmp_path / "src")
    entries = [{"Dataset": "d", "Singer": "s", "Song": "x", "Uid": "s_x_1", "Duration": 1.0,
                "Path": str(tmp_path / "src/a/take.wav")},
               {"Dataset": "d", "Singer": "s", "Song": "x", "Uid": "s_x_2", "Duration": 1.0,
                "Path": "data/nowhere.wav"}]
    (tmp_path / "test.json").write_text(json.dumps(entries))
    assert json_file_sources(tmp_path / "test.json") == [
        ("s_x_1", tmp_path / "src/a/take.wav"), ("s_x_2", PROJECT_ROOT / "data/nowhere.wav")]
    (tmp_path / "bad.json").write_text('{"not": "a list"}')
    with pytest.raises(ValueError, match="stage 1 test.json"):
        json_file_sources(tmp_path / "bad.json")
