"""Bad configs, stage 1 inputs and training faults: one clear line and exit 2, nothing half-written
(the conversion cases are in test_bad_inputs.py, whose helpers this file shares)."""
from __future__ import annotations

import json
import logging
import pickle
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from bins import check_config
from bins.svc import preprocess as stage1
from models.base.checkpoint import CheckpointError, latest_checkpoint, list_checkpoints
from tests.inference_fixtures import CLIP
from tests.synthetic_processed import tiny_config
from utils.audio import load_audio

from tests.test_bad_inputs import (OTHER_CLIP, ROOT, RUN_SH, no_temporaries, run_cli,
                                    small_disk)  # noqa: F401  (a fixture)


# --- configs --------------------------------------------------------------------------------------

def test_config_errors_are_all_reported_at_once_naming_the_file(tmp_path, capsys):
    demo = ROOT / "egs/svc/DiffComoSVC/exp_config_demo.json"
    config = tmp_path / "exp.json"
    config.write_text(json.dumps({"base_config": str(demo), "dataset": ["mine"],
                                  "dataset_path": {"mine": "[your dataset path]"},
                                  "train": {"bacth_size": 4, "adamw": {"lr_": 1e-4}}}))
    code, lines = run_cli(check_config, [config], capsys)
    assert code == 2
    text = "\n".join(lines)
    assert "'train.bacth_size'" in text and "did you mean 'train.batch_size'" in text
    assert "'train.adamw.lr_'" in text and "dataset_path.mine" in text
    assert lines[0] == "config error: 3 problems in the config:"     # then one line each
    assert len(lines) == 4 and all(line.strip().startswith(f"{config}: ") for line in lines[1:])
    folder_base = tmp_path / "folder.json"
    folder_base.write_text(json.dumps({"base_config": str(tmp_path)}))
    code, lines = run_cli(check_config, [folder_base], capsys)
    assert code == 2 and len(lines) == 1
    assert str(tmp_path) in lines[0] and f"the base_config of {folder_base}" in lines[0]
    assert "is a folder" in lines[0]
    missing_base = tmp_path / "missing.json"
    missing_base.write_text(json.dumps({"base_config": "nowhere.json"}))
    code, lines = run_cli(check_config, [missing_base], capsys)
    assert code == 2 and len(lines) == 1
    assert "nowhere.json" in lines[0] and str(missing_base) in lines[0]


def test_config_relations_and_non_finite_numbers_are_reported_with_the_other_errors(tmp_path,
                                                                                   capsys):
    demo = ROOT / "egs/svc/DiffComoSVC/exp_config_demo.json"
    config = tmp_path / "exp.json"
    config.write_text(json.dumps({
        "base_config": str(demo), "train": {"bacth_size": 4, "adamw": {
            "lr": float("nan"), "betas": [0.9, 1.5], "weight_decay": float("inf")}},
        "preprocess": {"n_mel": 80, "f0_min": 900.0, "f0_max": 100.0},
        "model": {"comosvc": {"output_dim": 64}}}))
    code, lines = run_cli(check_config, [config], capsys)
    assert code == 2
    assert lines[0] == "config error: 6 problems in the config:"
    assert [line.strip() for line in lines[1:]] == [f"{config}: {text}" for text in (
        "unknown key 'train.bacth_size'; did you mean 'train.batch_size'?",
        "train.adamw.lr = nan must be a finite number > 0",
        "train.adamw.weight_decay = inf must be a finite number >= 0",
        "preprocess.f0_min = 900.0 must be below preprocess.f0_max = 100.0",
        "train.adamw.betas = [0.9, 1.5] must be two numbers in [0, 1)",
        "model.comosvc.output_dim = 64 must equal preprocess.n_mel = 80")]
    # NaN through --set too; a refused value is not compared with others (its default would be)
    code, lines = run_cli(check_config, [demo, "--set", "train.adamw.lr=NaN", "--set",
                                         "preprocess.n_mel='eighty'"], capsys)
    assert code == 2 and lines[0] == "config error: 2 problems in the config:"
    assert [line.strip() for line in lines[1:]] == [
        "--set preprocess.n_mel='eighty': preprocess.n_mel must be int, got 'eighty'",
        "--set train.adamw.lr=NaN: train.adamw.lr = nan must be a finite number > 0"]


# --- stage 1 --------------------------------------------------------------------------------------

@pytest.fixture()
def corpus(tmp_path, demo_data) -> Path:
    """A custom corpus of two singers, one 1.2 s take each, cut from the demo data, and its config."""
    root = tmp_path / "corpus"
    for singer, rel in (("alto", CLIP), ("tenor", OTHER_CLIP)):
        wav = load_audio(demo_data / rel, 24000)[24000:int(2.2 * 24000)]
        (root / singer / "song").mkdir(parents=True)
        sf.write(str(root / singer / "song" / "take.wav"), wav, 24000)
    config = tmp_path / "exp.json"
    config.write_text(json.dumps({
        "base_config": str(ROOT / "egs/svc/DiffComoSVC/exp_config_demo.json"),
        "dataset": ["demo"], "dataset_path": {"demo": str(root)}, "dataset_type": {"demo": "custom"},
        "preprocess": {"processed_dir": str(tmp_path / "processed"), "content_features": [],
                       "num_workers": 1, "min_duration": 0.5}}))
    return config


def test_stage1_redoes_broken_feature_files(corpus, tmp_path, capsys):
    code, _ = run_cli(stage1, ["--config", corpus], capsys)
    assert code == 0
    feats = tmp_path / "processed" / "demo"
    mel = feats / "mels" / "alto_song_take.npy"
    pitch = feats / "pitches" / "alto_song_take.npy"
    good_mel, good_pitch = np.load(mel), np.load(pitch)
    untouched = feats / "mels" / "tenor_song_take.npy"
    stamp = untouched.stat().st_mtime_ns
    mel.write_bytes(b"")                                   # 0 bytes: np.load raises EOFError
    pitch.write_bytes(pitch.read_bytes()[:100])            # truncated header
    code, lines = run_cli(stage1, ["--config", corpus], capsys)
    assert code == 0 and not lines
    np.testing.assert_array_equal(np.load(mel), good_mel)
    np.testing.assert_array_equal(np.load(pitch), good_pitch)
    assert untouched.stat().st_mtime_ns == stamp          # the intact one was not redone
    assert len(json.loads((feats / "train.json").read_text())) + \
        len(json.loads((feats / "test.json").read_text())) == 2


def test_stage1_on_a_full_disk_stops_in_one_line_and_resumes_once_there_is_space(corpus, tmp_path,
                                                                                 small_disk,
                                                                                 capsys):
    folder, fill = small_disk
    processed = folder / "processed"
    fill(24 * 1024)                       # the settings fit, not both utterances' features
    args = ["--config", corpus, "--set", f"preprocess.processed_dir={processed}"]
    code, lines = run_cli(stage1, args, capsys)
    assert code == 2
    assert len(lines) == 1 and lines[0].startswith(f"preprocess: {processed / 'demo'}/")
    assert re.search(r": cannot be written: (No space left on device|short write \(\d+ requested "
                     rf"and \d+ written\)) \(\d+(\.\d)? k?B free in {re.escape(str(folder))}",
                     lines[0]), lines[0]
    assert no_temporaries(folder)
    for npy in processed.rglob("*.npy"):  # what was written is whole
        np.load(npy)
    (folder / "filler").unlink()
    subprocess.run(["mount", "-o", "remount,size=4m", str(folder)], check=True)
    code, _ = run_cli(stage1, args, capsys)
    assert code == 0
    assert len(json.loads((processed / "demo" / "train.json").read_text())) + \
        len(json.loads((processed / "demo" / "test.json").read_text())) == 2


def test_stage1_removes_the_temporaries_of_a_killed_run(corpus, tmp_path, capsys):
    code, _ = run_cli(stage1, ["--config", corpus], capsys)
    assert code == 0
    mels = tmp_path / "processed" / "demo" / "mels"
    stale = [mels / ".alto_song_take.npy.k1ll3d9x.tmp", mels.parent / ".train.json.k1ll3d9x.tmp"]
    for p in stale:
        p.write_bytes(b"\x93NUMPY")
    code, _ = run_cli(stage1, ["--config", corpus], capsys)
    assert code == 0 and not any(p.exists() for p in stale)
    assert no_temporaries(tmp_path / "processed")


class _Payload:
    """Unpickling this would create a marker file: what a malicious checkpoint does."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


@pytest.mark.parametrize("case", ["missing", "empty", "garbage", "malicious"])
def test_stage1_checks_whisper_weights_before_any_work(corpus, tmp_path, capsys, case):
    weights = tmp_path / "whisper.pt"
    marker = tmp_path / "payload_ran"
    if case == "empty":
        weights.write_bytes(b"")
    elif case == "garbage":
        weights.write_bytes(b"PK\x03\x04" + bytes(1000))
    elif case == "malicious":
        weights.write_bytes(pickle.dumps({"dims": _Payload(marker)}, protocol=2))
    code, lines = run_cli(stage1, ["--config", corpus, "--set", "preprocess.content_features="
                                   "['whisper']", "--set", f"preprocess.whisper_path={weights}"],
                          capsys)
    assert code == 2
    assert not any("Traceback" in line for line in lines)
    if case == "missing":    # the three-line missing-weights message: file, key, how to get it
        assert lines[0] == f"preprocess: pretrained weights not found: {weights}"
        assert "preprocess.whisper_path" in lines[1]
    else:
        assert len(lines) == 1
        assert lines[0].startswith(f"preprocess: {weights} (preprocess.whisper_path): ")
    assert not marker.exists()
    assert not (tmp_path / "processed" / "demo" / "mels").exists()   # no feature was computed


# --- stage 2 --------------------------------------------------------------------------------------

def run_sh(*args, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(RUN_SH), *map(str, args)], cwd=cwd, capture_output=True,
                          text=True, timeout=300)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """Two one-step checkpoints of a tiny teacher on the synthetic processed folder."""
    from models.svc.comosvc.trainer import ComoSVCTrainer
    root = tmp_path_factory.mktemp("resume")
    cfg = tiny_config(root, overrides=["train.max_steps=2", "train.save_every_steps=1",
                                       "train.keep_last=0"])
    ComoSVCTrainer(cfg, "a").train()
    return root


@pytest.mark.parametrize("processes", [1, 2])
def test_run_sh_stage2_config_error_exits_2_without_a_traceback(trained, tmp_path, processes):
    gpus = ["--gpu", "0,1"] if processes == 2 else []    # two processes (CPU here, no GPU needed)
    r = run_sh("--stage", "2", "--name", "x", "--config", trained / "config.json", "--set",
               "train.bogus=1", *gpus, cwd=tmp_path)
    assert r.returncode == 2
    lines = [line for line in r.stderr.splitlines()
             if line.strip() and "torch/distributed/elastic" not in line]   # its own 2 log lines
    # One line from each process that got that far (the launcher stops the others on the first
    # failure).
    assert 1 <= len(lines) <= processes
    assert all(line.startswith("error: --set train.bogus=1: unknown key") for line in lines)
    assert "Traceback" not in r.stderr and "CalledProcessError" not in r.stderr
    assert not (trained / "logs" / "x").exists()


@pytest.mark.parametrize("damage", ["truncated", "flipped"])
def test_resume_falls_back_to_the_newest_intact_checkpoint(trained, tmp_path, caplog, damage):
    from models.svc.comosvc.trainer import ComoSVCTrainer
    root = tmp_path / "root"
    shutil.copytree(trained, root)
    newest = root / "logs" / "a" / "checkpoint" / "step-00000002.pt"
    data = newest.read_bytes()
    if damage == "truncated":
        newest.write_bytes(data[:len(data) // 2])
    else:   # 16 bytes in the middle of the file (tensor data): it still unpickles
        at = len(data) // 2
        newest.write_bytes(data[:at] + b"A" * 16 + data[at + 16:])
    cfg = tiny_config(root, overrides=["train.max_steps=3", "train.save_every_steps=1",
                                       "train.keep_last=0"])
    with caplog.at_level(logging.WARNING):
        trainer = ComoSVCTrainer(cfg, "a", resume=True)
    assert trainer.step == 1
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any(str(newest) in w and "renamed it to step-00000002.pt.broken" in w for w in warnings)
    assert not newest.exists() and newest.with_name("step-00000002.pt.broken").exists()
    assert latest_checkpoint(root / "logs" / "a").name == "step-00000001.pt"


def test_a_diverged_training_saves_nothing_and_keeps_its_checkpoints(trained, tmp_path, capsys):
    from models.svc.comosvc.trainer import ComoSVCTrainer
    root = tmp_path / "root"
    shutil.copytree(trained, root)
    folder = root / "logs" / "a" / "checkpoint"
    before = list_checkpoints(folder)
    cfg = tiny_config(root, overrides=["train.max_steps=3", "train.save_every_steps=1",
                                       "train.keep_last=1"])
    trainer = ComoSVCTrainer(cfg, "a", resume=True)
    with torch.no_grad():
        next(trainer.model.parameters()).fill_(float("nan"))
    with pytest.raises(CheckpointError, match=r"step 3: weight .* holds NaN or inf \(the training "
                                              r"diverged\); .*step-00000003.pt not written"):
        trainer.train()
    assert list_checkpoints(folder) == before      # nothing written, nothing pruned
    assert no_temporaries(folder)
