"""Evaluation metrics (evaluation/) and the `cantor eval` command on real singing from the demo data."""
from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest

from evaluation.cer import WhisperTranscriber
from evaluation.f0_metrics import estimate_key_shift, f0_scores
from processors.pitch_shift import shift_f0
from evaluation.layout import (LayoutError, SourceIndex, find_conversions, match_singer,
                               reference_sets)
from evaluation.mcd import all_pass_alpha, mel_cepstral_distortion
from utils.audio import load_audio, save_wav

CLIP_SECONDS = 4
TINY_EN = Path(__file__).resolve().parent.parent / "pretrained" / "whisper" / "tiny.en.pt"


def _clip(demo_data: Path, rel: str, sr: int, seconds: float = CLIP_SECONDS) -> np.ndarray:
    return load_audio(demo_data / rel, sr)[: int(seconds * sr)]


# -- F0 ---------------------------------------------------------------------------------------------
def test_f0_scores_octave_error_and_voicing_hand_computed():
    source = np.array([0, 50, 100, 150, 0, 100], dtype=np.float32)
    output = np.array([0, 200, 400, 600, 100, 0], dtype=np.float32)
    # +12 semitones: reference [0, 100, 200, 300, 0, 200]; output is one octave above it on the
    # three frames voiced in both, and frames 4 and 5 disagree on voicing.
    s = f0_scores(shift_f0(source, 12), output)
    assert s.n_voiced_both == 3 and s.n_frames == 6
    assert s.fpc == pytest.approx(1.0)
    assert s.rmse_cents == pytest.approx(1200.0)
    assert s.vuv_error == pytest.approx(2 / 6)
    # +24 semitones matches the output exactly where both are voiced.
    assert f0_scores(shift_f0(source, 24), output).rmse_cents == pytest.approx(0.0, abs=1e-9)


def test_f0_scores_pearson_and_rmse_hand_computed():
    # deviations from the mean 250: ref (-150, -50, 50, 150), out (-150, 50, -50, 150):
    # covariance 40000 / variance 50000 = 0.8
    s = f0_scores(np.array([100, 200, 300, 400.0]), np.array([100, 300, 200, 400.0]))
    assert s.fpc == pytest.approx(0.8)
    cents = 1200 * np.log2(np.array([1, 1.5, 2 / 3, 1]))
    assert s.rmse_cents == pytest.approx(math.sqrt(np.mean(cents ** 2)))
    assert s.vuv_error == 0.0
    reversed_ = f0_scores(np.array([100, 200, 300.0]), np.array([300, 200, 100.0]))
    assert reversed_.fpc == pytest.approx(-1.0)
    assert reversed_.rmse_cents == pytest.approx(1200 * math.log2(3) * math.sqrt(2 / 3))


def test_f0_scores_edge_cases():
    # different lengths: the common start is compared
    s = f0_scores(np.array([100.0, 0, 0, 200]), np.array([100.0, 0, 0]))
    assert s.n_frames == 3 and s.vuv_error == 0.0
    # fewer than two frames voiced in both: FPC and RMSE undefined
    assert math.isnan(s.fpc) and math.isnan(s.rmse_cents)
    with pytest.raises(ValueError, match="negative"):
        f0_scores(np.array([100.0, -1.0]), np.array([100.0, 100.0]))
    assert np.array_equal(shift_f0(np.array([0.0, 440.0]), -12), [0.0, 220.0])


def test_estimate_key_shift_and_key_shift_arguments():
    source = np.array([0, 100, 200, 300, 400, 0.0])
    # intervals -2.3, -1.9, -2.1 semitones on the frames voiced in both (frame 4 unvoiced in output)
    output = source * 2.0 ** (np.array([0, -2.3, -1.9, -2.1, 0, 0]) / 12)
    output[4] = 0
    assert estimate_key_shift(source, output) == -2.0
    assert estimate_key_shift(source, np.zeros(6)) == 0.0
    from bins.calc_metrics import _key_shifts
    assert _key_shifts(["-2", "opencpop_female1=auto", "x_y=3.5"]) == (
        -2.0, {"opencpop_female1": "auto", "x_y": 3.5})
    with pytest.raises(ValueError, match="--key_shift up"):
        _key_shifts(["up"])


# -- MCD --------------------------------------------------------------------------------------------
def test_all_pass_alpha_matches_sptk_customary_values():
    assert all_pass_alpha(16000) == pytest.approx(0.41, abs=0.002)
    assert all_pass_alpha(22050) == pytest.approx(0.455, abs=0.002)
    assert all_pass_alpha(48000) == pytest.approx(0.554, abs=0.002)


def test_mcd_zero_for_identical_and_grows_with_distortion(demo_data):
    sr = 16000
    wav = _clip(demo_data, "ZH-Alto-1/zh01/control.flac", sr, 3)
    assert mel_cepstral_distortion(wav, wav, sr) == 0.0
    # a gain change only moves c0, which MCD leaves out
    assert mel_cepstral_distortion(wav, 0.5 * wav, sr) < 0.2
    rng = np.random.default_rng(0)
    noise = rng.standard_normal(wav.size).astype(np.float32)
    values = [mel_cepstral_distortion(wav, wav + level * noise, sr) for level in (0.002, 0.02, 0.1)]
    assert 0 < values[0] < values[1] < values[2]


def test_self_reconstruction_metrics_on_real_takes(demo_data):
    """Frame-by-frame MCD, log-mel L1 and GV of a real take against itself (0), against its own
    copy key-shifted by 3 semitones, and against another singer's take (different content)."""
    import librosa

    from evaluation.spectral import global_variance, gv_difference_db, log_mel, mel_l1
    from utils.schema import PreprocessConfig
    pcfg = PreprocessConfig(sample_rate=22050, n_fft=1024, hop_size=256, win_size=1024, n_mel=80,
                            fmax=8000)
    sr = pcfg.sample_rate
    take = _clip(demo_data, "ZH-Alto-1/zh01/control.flac", sr)
    shifted = librosa.effects.pitch_shift(take, sr=sr, n_steps=3)
    other = _clip(demo_data, "DE-Tenor-1/ge/control.flac", sr)
    mel, mel_shifted, mel_other = (log_mel(w, pcfg) for w in (take, shifted, other))
    assert mel.shape == (80, take.size // 256)
    gv = global_variance(mel)
    assert mel_cepstral_distortion(take, take, sr, align=False) == 0.0
    assert mel_l1(mel, mel) == 0.0 and gv_difference_db(gv, gv) == 0.0
    mcd = {name: mel_cepstral_distortion(w, take, sr, align=False)
           for name, w in (("shifted", shifted), ("other", other))}
    l1 = {"shifted": mel_l1(mel_shifted, mel), "other": mel_l1(mel_other, mel)}
    assert 1.0 < mcd["shifted"] < mcd["other"] and 0.1 < l1["shifted"] < l1["other"]
    assert abs(gv_difference_db(global_variance(mel_other), gv)) > 0.5
    # a smoothed spectrum (log-mel averaged over 9 frames) has less variance: GV below 0 dB;
    # added frame-to-frame noise gives more
    kernel = np.ones(9) / 9
    smooth = np.stack([np.convolve(b, kernel, mode="same") for b in mel])
    noisy = mel + np.random.default_rng(0).normal(0, 1.0, mel.shape)
    assert gv_difference_db(global_variance(smooth), gv) < -1.0
    assert gv_difference_db(global_variance(noisy), gv) > 1.0


def test_key_shift_control_moves_the_voice_but_keeps_length(demo_data):
    from evaluation.speaker import EMBEDDING_RATE, SpeakerEncoder, cosine_similarity, key_shift_control
    take = _clip(demo_data, "ZH-Alto-1/zh02/control.flac", EMBEDDING_RATE)
    assert np.array_equal(key_shift_control(take, 0), take)
    up = key_shift_control(take, 5)
    assert up.shape == take.shape and up.dtype == np.float32
    encoder = SpeakerEncoder("cpu")
    own = encoder.embed(_clip(demo_data, "ZH-Alto-1/zh01/control.flac", EMBEDDING_RATE))
    assert cosine_similarity(encoder.embed(up), own) < cosine_similarity(encoder.embed(take), own) - 0.02


# -- speaker similarity -----------------------------------------------------------------------------
def test_speaker_similarity_same_singer_beats_other_singer(demo_data):
    from evaluation.speaker import EMBEDDING_RATE, SpeakerEncoder, cosine_similarity, mean_embedding
    encoder = SpeakerEncoder("cpu")
    embed = lambda rel: encoder.embed(_clip(demo_data, rel, EMBEDDING_RATE))  # noqa: E731
    tenor = mean_embedding([embed("DE-Tenor-1/ge/control.flac"), embed("DE-Tenor-1/ge05/control.flac")])
    alto = mean_embedding([embed("ZH-Alto-1/zh01/control.flac"), embed("ZH-Alto-1/zh02/control.flac")])
    for rel, own, other in (("DE-Tenor-1/ge04/control.flac", tenor, alto),
                            ("ZH-Alto-1/zh03/control.flac", alto, tenor)):
        e = embed(rel)
        assert np.linalg.norm(e) == pytest.approx(1.0, abs=1e-4)
        assert cosine_similarity(e, own) > cosine_similarity(e, other) + 0.1, rel
    with pytest.raises(ValueError, match="voiced audio"):
        encoder.embed(np.zeros(EMBEDDING_RATE * 2, dtype=np.float32))


# -- CER --------------------------------------------------------------------------------------------
def _tiny_whisper(path: Path) -> None:
    """A random tiny English-only Whisper in openai-whisper's .pt format whose decoder always
    prefers the token " la" (final layer norm outputs a constant; only that token's embedding is
    non-zero), so transcripts are "la la la" whatever the audio."""
    import torch
    from whisper.model import ModelDimensions, Whisper
    from whisper.tokenizer import get_tokenizer
    torch.manual_seed(0)
    dims = ModelDimensions(n_mels=80, n_audio_ctx=1500, n_audio_state=32, n_audio_head=1,
                           n_audio_layer=1, n_vocab=51864, n_text_ctx=8, n_text_state=32,
                           n_text_head=1, n_text_layer=1)
    model = Whisper(dims)
    (token,) = get_tokenizer(multilingual=False).encode(" la")
    with torch.no_grad():
        direction = torch.ones(32)
        model.decoder.ln.weight.zero_()
        model.decoder.ln.bias.copy_(direction)
        model.decoder.token_embedding.weight.zero_()
        model.decoder.token_embedding.weight[token] = direction
    torch.save({"dims": vars(dims), "model_state_dict": model.state_dict()}, path)


# -- layout -----------------------------------------------------------------------------------------
def test_layout_names_sources_and_references(tmp_path):
    tone = 0.1 * np.sin(2 * np.pi * 220 * np.arange(1600) / 16000).astype(np.float32)
    for rel in ("data/A/s1/control.wav", "data/A/s2/control.wav", "data/B/s3/take.wav",
                "out/A_s1_control/A_s1_control_vctk_p225_x.wav", "out/A_s1_control/stray.wav"):
        save_wav(tmp_path / rel, tone, 16000)
    convs = find_conversions(tmp_path / "out")
    assert [(c.source_name, c.target) for c in convs] == [("A_s1_control", "vctk_p225_x")]
    index = SourceIndex()
    index.add(tmp_path / "data")
    src = index.lookup("A_s1_control")
    assert src.path == tmp_path / "data/A/s1/control.wav" and src.singer == "A"
    assert index.lookup("s3_take").path == index.lookup("take").path == tmp_path / "data/B/s3/take.wav"
    with pytest.raises(LayoutError, match="ambiguous"):
        index.lookup("control")
    with pytest.raises(LayoutError, match="no source"):
        index.lookup("nothing")
    meta = tmp_path / "test.json"
    meta.write_text(json.dumps([{"Dataset": "demo", "Singer": "B", "Song": "s3", "Uid": "u1",
                                 "Path": str(tmp_path / "data/B/s3/take.wav"), "Duration": 0.1}]))
    index.add(meta)
    assert index.lookup("u1").singer == "demo_B"
    refs = reference_sets([str(tmp_path / "data"), f"C={tmp_path / 'data/B/s3/take.wav'}", str(meta)])
    assert sorted(refs) == ["A", "B", "C", "demo_B"] and len(refs["A"]) == 2
    assert match_singer("demo_B", refs) == "demo_B"
    assert match_singer("opencpop_A", refs) == "A"
    assert match_singer("Z", refs) is None


# -- end to end -------------------------------------------------------------------------------------
def test_calc_metrics_end_to_end(demo_data, tmp_path, capsys, monkeypatch):
    """`cantor eval` on a tiny tree: a self-conversion (copy of the source), a -2 semitone pitch
    shift of the source scored with the key shift estimated and with none, and a "conversion" that
    is a copy of a tenor's source labelled as the alto; with a second folder (another "model") that
    holds the tenor's file again, scored in the same run."""
    import librosa

    from cantor.cli import main
    from evaluation.runner import COLUMNS

    sr = 22050
    data, out = tmp_path / "data", tmp_path / "out"
    clips = {}
    for rel in ("ZH-Alto-1/zh01/control", "ZH-Alto-1/zh02/control", "ZH-Alto-1/zh03/control",
                "DE-Tenor-1/ge/control", "DE-Tenor-1/ge04/control"):
        clips[rel] = _clip(demo_data, rel + ".flac", sr)
        save_wav(data / (rel + ".wav"), clips[rel], sr)
    alto, tenor = "ZH-Alto-1_zh03_control", "DE-Tenor-1_ge04_control"
    shifted = librosa.effects.pitch_shift(clips["ZH-Alto-1/zh03/control"], sr=sr, n_steps=-2)
    save_wav(out / alto / f"{alto}_demo_ZH-Alto-1.wav", clips["ZH-Alto-1/zh03/control"], sr)
    save_wav(out / alto / f"{alto}_demo_DE-Tenor-1.wav", shifted, sr)
    save_wav(out / alto / f"{alto}_demo_IT-Soprano-1.wav", shifted, sr)
    save_wav(out / tenor / f"{tenor}_demo_ZH-Alto-1.wav", clips["DE-Tenor-1/ge04/control"], sr)
    other = tmp_path / "other_model"
    save_wav(other / tenor / f"{tenor}_demo_ZH-Alto-1.wav", clips["DE-Tenor-1/ge04/control"], sr)
    whisper_path = tmp_path / "tiny.pt"
    _tiny_whisper(whisper_path)
    transcribed = []
    real_transcribe = WhisperTranscriber.transcribe
    monkeypatch.setattr(WhisperTranscriber, "transcribe", lambda self, wav, language="en":
                        transcribed.append(len(wav)) or real_transcribe(self, wav, language))
    args = ["--source", str(data), "--target_refs", str(data), "--key_shift", "0",
            "--key_shift", "DE-Tenor-1=auto", "--sample_rate", "16000", "--language", "en",
            "--cer_sources", "*DE-*", "--whisper_path", str(whisper_path)]
    assert main(["eval", str(out), str(other), "--output_tsv", str(tmp_path / "x.tsv"), *args]) == 2
    assert "--output_tsv takes one CONVERTED_DIR" in capsys.readouterr().err
    assert main(["eval", str(out), str(other), *args]) == 0
    # the tenor's source once, then one output per folder: the second folder reuses the source's
    assert len(transcribed) == 3
    tsv = out / "metrics.tsv"
    with open(other / "metrics.tsv", newline="") as f:
        other_rows = [r for r in csv.DictReader(f, delimiter="\t")]
    assert [r["source"] for r in other_rows] == [tenor, "MEAN"]
    with open(tsv, newline="") as f:
        rows = {(r["source"], r["target"]): r for r in csv.DictReader(f, delimiter="\t")}
    val = lambda r, k: float(r[k]) if r[k] else math.nan  # noqa: E731
    assert len(rows) == 7 and {("MEAN", ""), ("MEAN self", ""), ("MEAN cross", "")} <= set(rows)

    self_conv = rows[(alto, "demo_ZH-Alto-1")]
    assert self_conv["kind"] == "self"
    assert val(self_conv, "fpc") > 0.99 and val(self_conv, "f0_rmse_cents") < 10
    # a perfect self-reconstruction, scored frame by frame against the real take
    assert val(self_conv, "mcd_db") == val(self_conv, "mel_l1") == val(self_conv, "gv_db") == 0.0
    assert val(self_conv, "sim_source") > 0.99
    # references exclude the source itself: zh01 and zh02 only
    assert 0.8 < val(self_conv, "sim_target") < 0.99

    down = rows[(alto, "demo_DE-Tenor-1")]
    assert down["kind"] == "cross" and math.isnan(val(down, "mel_l1"))
    assert float(down["key_shift"]) == -2 and "key shift estimated" in down["notes"]
    # a key shift alone is its own control: no gain over it
    assert abs(val(down, "sim_gain")) < 0.05
    assert val(down, "sim_gain") == pytest.approx(val(down, "sim_target") - val(down, "sim_control"))
    assert val(down, "gv_db") < -1  # the alto's spectrum varies less than the tenor's recordings
    assert val(down, "fpc") > 0.9 and val(down, "f0_rmse_cents") < 60
    assert math.isnan(val(down, "mcd_db")) and "no same-content reference" in down["notes"]
    assert val(down, "sim_source") > val(down, "sim_target")  # still sounds like the alto
    unshifted = rows[(alto, "demo_IT-Soprano-1")]  # same audio, scored against the unshifted source
    assert 170 < val(unshifted, "f0_rmse_cents") < 230
    assert math.isnan(val(unshifted, "sim_target")) and "no reference recordings" in unshifted["notes"]

    failed = rows[(tenor, "demo_ZH-Alto-1")]
    assert val(failed, "sim_source") > val(failed, "sim_target") + 0.1
    assert val(failed, "sim_gain") == 0.0  # unshifted: the control is the output itself
    assert val(failed, "cer") == 0.0  # identical audio, identical transcripts ("la la la")
    assert val(failed, "cer_capped") == 0.0 and math.isnan(val(failed, "cer_median"))
    assert val(failed, "content_distance") == 0.0  # identical audio, identical encoder features
    assert {k: other_rows[0][k] for k in COLUMNS if k != "output"} == \
        {k: failed[k] for k in COLUMNS if k != "output"}
    assert all(math.isnan(val(r, "cer")) and math.isnan(val(r, "content_distance"))
               for k, r in rows.items() if k[0] == alto)  # not selected by --cer_sources

    mean = rows[("MEAN", "")]
    fpcs = [val(r, "fpc") for k, r in rows.items() if not k[0].startswith("MEAN")]
    assert val(mean, "fpc") == pytest.approx(np.mean(fpcs), abs=1e-4)
    assert val(mean, "cer_median") == val(mean, "content_distance") == 0.0
    assert val(rows[("MEAN self", "")], "mcd_db") == 0.0
    printed = capsys.readouterr().out
    assert "MEAN" in printed and "closer to the target singer than to the source: 0 of 2" in printed
    assert "beat the key-shift control" in printed and " of 2 outputs" in printed


def test_demo_table_summarises_a_models_metrics_and_timings(tmp_path):
    from bins.bench import demo_table
    from evaluation.report import write_tsv
    from evaluation.runner import COLUMNS, mean_row

    def row(kind, **metrics):
        r = {c: math.nan for c in COLUMNS}
        r.update(output=f"{kind}.wav", source="s", target="t", kind=kind, key_shift=0.0, language="",
                 notes="")
        r.update(metrics)
        return r

    rows = [row("self", mcd_db=6.0, f0_rmse_cents=40.0, gv_db=-1.0, cer=0.2, cer_capped=0.2,
                cer_copy=0.1, content_distance=0.1),
            row("self", mcd_db=7.0, f0_rmse_cents=60.0, gv_db=0.5, cer=0.4, cer_capped=0.4,
                cer_copy=0.3, content_distance=0.2),
            row("cross", sim_target=0.8, sim_gain=0.05, fpc=0.9, cer=18.8, cer_capped=1.0,
                cer_copy=1.4, content_distance=0.6),  # a looping take, and its copy synthesis too
            row("cross", sim_target=0.6, sim_gain=-0.01, fpc=0.95)]
    folder = tmp_path / "teacher"
    folder.mkdir()
    write_tsv(rows + [mean_row(rows)], folder / "metrics.tsv")
    (folder / "convert.log").write_text(
        "INFO 10.0 s of audio in 2.0 s: real-time factor 0.200 (features ...)\n"
        "INFO 30.0 s of audio in 4.0 s: real-time factor 0.133 (features ...)\n")
    got = demo_table.model_row(folder)
    assert got["mcd"] == pytest.approx(6.5) and got["f0"] == pytest.approx(50.0)
    assert got["gv"] == pytest.approx(-0.25) and got["sim"] == pytest.approx(0.7)
    assert got["gain"] == pytest.approx(0.02) and got["wins"] == "1/2"
    assert got["fpc"] == pytest.approx(0.925) and got["cer_rel"] == pytest.approx(19.4 / 1.8)
    # capped: mean (0.2, 0.4, 1) over mean (0.1, 0.3, min(1.4, 1)); the median of (0.2, 0.4, 18.8)
    assert got["cer_capped"] == pytest.approx(1.6 / 3) and got["cer_median"] == pytest.approx(0.4)
    assert got["cer_capped_rel"] == pytest.approx(1.6 / 1.4)
    assert got["content"] == pytest.approx(0.3)
    assert got["rtf"] == pytest.approx(0.15)  # 6 s over 40 s of audio, not the mean of the factors
    table = demo_table.markdown({"teacher": got})
    assert ("| teacher, 4 Euler steps | 6.50 | 50 | -0.25 | 0.700 | +0.020 (1/2) | 0.925 | 10.78 | "
            "0.533 | 0.400 | 1.14 | 0.300 | 0.150 |") in table
    assert demo_table.main([str(tmp_path), "--models", "teacher", "student"]) == 2  # no student yet


def test_demo_pairs_convert_each_take_into_its_own_and_the_next_two_singers(tmp_path):
    from bins.bench.demo_pairs import write_pairs
    test = [{"Dataset": "gt", "Singer": s, "Uid": f"gt_{s}_{n}"} for s in "DBCA" for n in (1, 2)]
    files = write_pairs(test, tmp_path / "pairs")
    assert [f.name for f in files] == ["gt_A.json", "gt_B.json", "gt_C.json", "gt_D.json"]
    sources = {f.stem: sorted({u["Singer"] for u in json.loads(f.read_text())}) for f in files}
    # sorted singers A B C D: the target i takes singers i, i-1 and i-2
    assert sources == {"gt_A": ["A", "C", "D"], "gt_B": ["A", "B", "D"], "gt_C": ["A", "B", "C"],
                       "gt_D": ["B", "C", "D"]}
    assert len(json.loads(files[0].read_text())) == 6  # every take of those singers
    own = write_pairs(test, tmp_path / "self", offsets=(0,))
    assert {f.stem: [u["Uid"] for u in json.loads(f.read_text())] for f in own}["gt_C"] == ["gt_C_1", "gt_C_2"]
