"""run.sh argument handling and the `cantor` console entry point, as a user runs them."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RUN_SH = ROOT / "egs" / "svc" / "DiffComoSVC" / "run.sh"


def run(cmd, cwd):
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=120)


def test_run_sh_unknown_flag_prints_usage(tmp_path):
    r = run(["sh", str(RUN_SH), "--stage", "1", "--bogus"], tmp_path)
    assert r.returncode == 2
    assert "unknown option: --bogus" in r.stderr and "usage: run.sh" in r.stderr


def test_run_sh_missing_required_values(tmp_path):
    r = run(["bash", str(RUN_SH)], tmp_path)
    assert r.returncode == 2 and "--stage is required" in r.stderr
    r = run(["bash", str(RUN_SH), "--stage", "2"], tmp_path)
    assert r.returncode == 2 and "stage 2 needs --name" in r.stderr
    r = run(["bash", str(RUN_SH), "--stage", "3", "--infer_expt_dir", "x"], tmp_path)
    assert r.returncode == 2 and "stage 3 needs" in r.stderr
    r = run(["bash", str(RUN_SH), "--stage", "1", "--config"], tmp_path)
    assert r.returncode == 2 and "--config needs a value" in r.stderr


def test_run_sh_stage1_from_another_directory_reports_placeholder(tmp_path):
    # The shipped exp_config.json still holds dataset placeholders: stage 1 must stop with one
    # clear error naming the key, whatever the current directory.
    r = run(["sh", str(RUN_SH), "--stage", "1"], tmp_path)
    assert r.returncode != 0
    assert "dataset_path.opencpop" in r.stderr and "placeholder" in r.stderr


def test_cantor_help_lists_subcommands(tmp_path):
    r = run([sys.executable, "-m", "cantor.cli", "--help"], ROOT)
    assert r.returncode == 0, r.stderr
    for name in ("check-config", "preprocess", "prepare", "train", "train-stage", "infer", "eval",
                 "convert-contentvec",
                 "convert-whisper-ct2"):
        assert name in r.stdout


def test_cantor_check_config_reports_misspelt_key(tmp_path):
    cfg = tmp_path / "exp.json"
    cfg.write_text('{"base_config": "%s", "preprocess": {"sample_rte": 16000}}'
                   % (ROOT / "config" / "comosvc.json"))
    r = run([sys.executable, "-m", "cantor.cli", "check-config", str(cfg)], ROOT)
    assert r.returncode == 2
    assert "preprocess.sample_rte" in r.stderr and "preprocess.sample_rate" in r.stderr
