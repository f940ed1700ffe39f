"""Stage 1 end to end: features, metadata, singer table, statistics, resumption and bad inputs."""
from __future__ import annotations

import argparse
import csv
import json
import types
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from bins.svc import preprocess as preprocess_cli
from preprocessors.common import MetadataError
from processors.mel import mel_and_energy
from processors.stage1 import FEATURE_DIRS, run_stage1
from utils.audio import load_audio
from utils.config import config_from_dict

SR_IN = 16000
FREQS = {"alto_1": 220.0, "tenor": 150.0}
BAD = {"corrupt": "cannot decode", "empty": "empty audio", "short": "too short",
       "silent": "all silent", "nan": "NaN"}


def tone(f0: float, seconds: float) -> np.ndarray:
    phase = 2 * np.pi * f0 * np.arange(int(seconds * SR_IN)) / SR_IN
    return sum(0.3 / k * np.sin(k * phase) for k in range(1, 5)).astype(np.float32)


@pytest.fixture()
def corpus(tmp_path) -> Path:
    """Two singers x two songs of 1 s harmonic tones, and five bad files in alto_1/bad/."""
    root = tmp_path / "corpus"
    for singer, f0 in FREQS.items():
        for song in ("s1", "s2"):
            (root / singer / song).mkdir(parents=True)
            sf.write(str(root / singer / song / "take.wav"), tone(f0, 1.0), SR_IN)
    bad = root / "alto_1" / "bad"
    bad.mkdir()
    (bad / "corrupt.wav").write_bytes(b"RIFF\x00\x01garbage" * 50)
    sf.write(str(bad / "empty.wav"), np.zeros(0, np.float32), SR_IN)
    sf.write(str(bad / "short.wav"), tone(220.0, 0.1), SR_IN)
    sf.write(str(bad / "silent.wav"), np.zeros(SR_IN, np.float32), SR_IN)
    with_nan = tone(220.0, 1.0)
    with_nan[100] = np.nan
    sf.write(str(bad / "nan.wav"), with_nan, SR_IN, subtype="FLOAT")
    return root


def make_cfg(tmp_path: Path, root: Path, **extra):
    data = {"dataset": ["synth"], "dataset_path": {"synth": str(root)}, "dataset_type": {"synth": "custom"},
            "vocoder": {"type": "griffin_lim"},
            "preprocess": {"processed_dir": str(tmp_path / "processed"), "sample_rate": 22050,
                           "n_mel": 80, "fmax": 8000, "content_features": [], "num_workers": 2},
            "model": {"comosvc": {"output_dim": 80}}}
    for key, value in extra.items():
        data.setdefault(key, {}).update(value) if isinstance(value, dict) else data.update({key: value})
    return config_from_dict(data)


def feature_files(out: Path) -> dict[Path, int]:
    return {p: p.stat().st_mtime_ns for d in FEATURE_DIRS.values() for p in (out / d).glob("*.npy")}


def test_stage1_end_to_end_bad_inputs_and_statistics(tmp_path, corpus):
    cfg = make_cfg(tmp_path, corpus)
    summary = run_stage1(cfg)
    out = tmp_path / "processed" / "synth"
    assert summary["synth"]["train"] == 2 and summary["synth"]["test"] == 2
    assert summary["synth"]["skipped"] == len(BAD)

    with open(out / "skipped.tsv", encoding="utf-8") as f:
        rows = {r["Uid"]: r for r in csv.DictReader(f, delimiter="\t")}
    assert set(rows) == {f"alto_1_bad_{name}" for name in BAD}
    for name, reason in BAD.items():
        assert reason in rows[f"alto_1_bad_{name}"]["reason"]
        assert rows[f"alto_1_bad_{name}"]["Path"].endswith(f"{name}.wav")

    train = json.loads((out / "train.json").read_text())
    test = json.loads((out / "test.json").read_text())
    assert [u["Uid"] for u in train] == ["alto_1_s1_take", "tenor_s1_take"]
    assert [u["Uid"] for u in test] == ["alto_1_s2_take", "tenor_s2_take"]
    assert all(u["Duration"] == pytest.approx(1.0, abs=1e-3) for u in train + test)
    singers = json.loads((tmp_path / "processed" / "singers.json").read_text())
    assert singers == {"synth_alto_1": 0, "synth_tenor": 1}

    for u in train + test:
        wav = load_audio(u["Path"], 22050)
        mel, energy = mel_and_energy(wav, cfg.preprocess)
        t = wav.size // 256
        stored = {k: np.load(out / d / f"{u['Uid']}.npy") for k, d in FEATURE_DIRS.items()}
        assert stored["mel"].shape == (80, t)
        np.testing.assert_allclose(stored["mel"], mel, atol=1e-5)
        np.testing.assert_allclose(stored["energy"], energy, rtol=1e-5)
        np.testing.assert_array_equal(stored["uv"], stored["f0"] == 0)
        voiced = stored["f0"][~stored["uv"]]
        assert voiced.size > 0.8 * t
        assert np.median(voiced) == pytest.approx(FREQS[u["Singer"]], rel=0.01)

    stats = json.loads((out / "statistics.json").read_text())
    mels = [np.load(out / "mels" / f"{u['Uid']}.npy") for u in train + test]
    np.testing.assert_allclose(stats["mel_min"], np.min([m.min(axis=1) for m in mels], axis=0), rtol=1e-6)
    np.testing.assert_allclose(stats["mel_max"], np.max([m.max(axis=1) for m in mels], axis=0), rtol=1e-6)
    energies = np.concatenate([np.load(out / "energys" / f"{u['Uid']}.npy") for u in train + test])
    assert stats["log_energy_min"] == pytest.approx(np.log(max(energies.min(), 1e-5)), rel=1e-6)
    assert stats["log_energy_max"] == pytest.approx(np.log(energies.max()), rel=1e-6)
    for singer, f0 in FREQS.items():
        s = stats["singers"][f"synth_{singer}"]
        assert s["f0_median"] == pytest.approx(f0, rel=0.01)
        assert s["f0_min"] <= s["f0_median"] <= s["f0_max"]
        assert s["n_voiced_frames"] > 100


def test_stage1_resumes_and_overwrites(tmp_path, corpus):
    cfg = make_cfg(tmp_path, corpus, preprocess={"num_workers": 1})
    out = tmp_path / "processed" / "synth"
    (tmp_path / "processed").mkdir()
    (tmp_path / "processed" / "singers.json").write_text('{"opencpop_female1": 0}')
    run_stage1(cfg)
    first = feature_files(out)
    assert len(first) == 4 * len(FEATURE_DIRS)

    # A killed run: one pitch file missing, one mel file garbage. Only those two are redone.
    (out / "pitches" / "tenor_s1_take.npy").unlink()
    (out / "mels" / "alto_1_s2_take.npy").write_bytes(b"not an npy file")
    run_stage1(cfg)
    second = feature_files(out)
    redone = {p.stem for p in first if second[p] != first.get(p)} | \
             {p.stem for p in set(second) - set(first)}
    assert redone == {"tenor_s1_take", "alto_1_s2_take"}
    assert np.load(out / "mels" / "alto_1_s2_take.npy").shape[0] == 80

    run_stage1(cfg, overwrite=True)
    third = feature_files(out)
    assert all(third[p] != second[p] for p in second)
    # The existing singer keeps its id; the new ones follow it.
    singers = json.loads((tmp_path / "processed" / "singers.json").read_text())
    assert singers == {"opencpop_female1": 0, "synth_alto_1": 1, "synth_tenor": 2}


def test_extract_audio_adds_only_the_waveforms_to_an_existing_cache(tmp_path, corpus):
    cfg = make_cfg(tmp_path, corpus, preprocess={"num_workers": 1})
    out = tmp_path / "processed" / "synth"
    run_stage1(cfg)
    first = feature_files(out)
    assert not (out / "audios").exists()
    run_stage1(make_cfg(tmp_path, corpus, preprocess={"num_workers": 1, "extract_audio": True}))
    assert feature_files(out) == first  # mel, F0, uv, energy untouched
    for mel_path in (out / "mels").glob("*.npy"):
        audio = np.load(out / "audios" / mel_path.name)
        t = np.load(mel_path).shape[1]
        assert audio.dtype == np.float32 and t * 256 <= len(audio) < (t + 1) * 256
        source = corpus / mel_path.stem.replace("_take", "").replace("_s", "/s", 1) / "take.wav"
        if mel_path.stem.startswith("tenor"):
            assert np.allclose(audio, load_audio(source, 22050), atol=1e-6)
    assert len(list((out / "audios").glob("*.npy"))) == len(first) // len(FEATURE_DIRS)


def test_changed_settings_invalidate_existing_features(tmp_path, corpus):
    out = tmp_path / "processed" / "synth"
    run_stage1(make_cfg(tmp_path, corpus, preprocess={"num_workers": 1}))
    before = feature_files(out)
    run_stage1(make_cfg(tmp_path, corpus, preprocess={"num_workers": 1, "f0_extractor": "dio"}))
    after = feature_files(out)
    assert set(after) == set(before) and all(after[p] != before[p] for p in before)
    assert json.loads((out / "acoustic_settings.json").read_text())["f0_extractor"] == "dio"
    run_stage1(make_cfg(tmp_path, corpus, preprocess={"num_workers": 1, "n_mel": 64},
                        model={"comosvc": {"output_dim": 64}}))
    assert np.load(out / "mels" / "tenor_s1_take.npy").shape[0] == 64
    assert len(json.loads((out / "statistics.json").read_text())["mel_min"]) == 64


def test_bad_dataset_path_fails_before_any_work(tmp_path, corpus):
    cfg = config_from_dict({
        "dataset": ["synth", "opencpop"], "dataset_path": {"synth": str(corpus), "opencpop": "<path>"},
        "dataset_type": {"synth": "custom"},
        "preprocess": {"processed_dir": str(tmp_path / "processed")}, "vocoder": {"type": "griffin_lim"}})
    with pytest.raises(MetadataError, match="dataset_path.opencpop"):
        run_stage1(cfg)
    assert not (tmp_path / "processed").exists()


def test_content_feature_skips_leave_the_splits(tmp_path, corpus, monkeypatch):
    calls = []

    def extract_content_for_dataset(cfg, dataset_dir, utterances, overwrite):
        calls.append(sorted(u["Uid"] for u in utterances))
        return [("tenor_s2_take", "whisper failed")]

    fake = types.ModuleType("processors.content.stage")
    fake.extract_content_for_dataset = extract_content_for_dataset
    monkeypatch.setitem(__import__("sys").modules, "processors.content.stage", fake)
    monkeypatch.setattr("processors.content.check_content_weights", lambda pcfg, ccfg: None)
    cfg = make_cfg(tmp_path, corpus, preprocess={"num_workers": 1, "content_features": ["whisper"]})
    summary = run_stage1(cfg)
    out = tmp_path / "processed" / "synth"
    assert calls == [["alto_1_s1_take", "alto_1_s2_take", "tenor_s1_take", "tenor_s2_take"]]
    assert summary["synth"] == pytest.approx({"train": 2, "test": 1, "skipped": 6, "hours": 3 / 3600}, rel=1e-3)
    assert "tenor_s2_take\t" in (out / "skipped.tsv").read_text()
    assert [u["Uid"] for u in json.loads((out / "test.json").read_text())] == ["alto_1_s2_take"]


def test_cli_on_demo_singers(tmp_path, demo_data, capsys):
    """Two real GTSinger singers, one short take each, through the command-line entry."""
    root = tmp_path / "demo"
    for rel in ("ZH-Tenor-1/zh07/control.flac", "ZH-Alto-1/zh01/breathy.flac"):
        (root / rel).parent.mkdir(parents=True)
        (root / rel).symlink_to(demo_data / rel)
    config = tmp_path / "exp.json"
    config.write_text(json.dumps({
        "base_config": str(Path(__file__).resolve().parent.parent / "egs/svc/DiffComoSVC/exp_config_demo.json"),
        "dataset": ["demo"], "dataset_path": {"demo": str(root)}, "dataset_type": {"demo": "custom"},
        "preprocess": {"processed_dir": str(tmp_path / "processed")}}))
    args = argparse.Namespace(config=str(config), num_workers=2, overwrite=False, shard=None, merge_shards=0,
                              overrides=["preprocess.content_features=[]"])
    assert preprocess_cli.run(args) == 0
    assert json.loads(capsys.readouterr().out)["demo"]["train"] == 2
    stats = json.loads((tmp_path / "processed" / "demo" / "statistics.json").read_text())
    assert len(stats["mel_min"]) == 80
    tenor, alto = stats["singers"]["demo_ZH-Tenor-1"], stats["singers"]["demo_ZH-Alto-1"]
    assert 100 < tenor["f0_median"] < 400 and 150 < alto["f0_median"] < 600
    assert tenor["n_voiced_frames"] > 200 and alto["n_voiced_frames"] > 200

    args.config = str(tmp_path / "missing.json")
    assert preprocess_cli.run(args) == 2
    assert "config file not found" in capsys.readouterr().err
