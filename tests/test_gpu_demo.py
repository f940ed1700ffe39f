"""bins/bench/gpu_demo.sh: the float16 weight packs round-trip, the smoke data subset, the output
checks, and ``gpu_demo.sh --smoke`` end to end on CPU (the GPU run's path with a tiny model)."""
from __future__ import annotations

import os
import subprocess

import pytest
import soundfile as sf
import torch

from bins.bench import gpu_demo_pack
from tests.conftest import ROOT


def test_pack_round_trip(tmp_path):
    tensors = {"a.weight": torch.randn(3, 5), "b.bias": torch.tensor([1.5, -2.0, 65504.0]),
               "c": torch.zeros(0)}
    gpu_demo_pack.write_pack(tmp_path / "p.xz", tensors, "state", {"dims": {"n": 3}})
    ckpt = gpu_demo_pack.read_pack(tmp_path / "p.xz")
    assert ckpt["dims"] == {"n": 3} and list(ckpt["state"]) == list(tensors)
    for name, value in tensors.items():
        assert torch.equal(ckpt["state"][name], value.half())


def test_smoke_data_subset(demo_data, tmp_path):
    size = gpu_demo_pack.reencode_data(demo_data, tmp_path, bits=13, smoke=True)
    takes = sorted(tmp_path.glob("*/*/*.flac"))
    assert len(takes) == gpu_demo_pack.SMOKE_SINGERS * gpu_demo_pack.SMOKE_SONGS
    info = sf.info(takes[0])
    assert (info.samplerate, info.subtype) == (gpu_demo_pack.SAMPLE_RATE, "PCM_16")
    assert info.duration == pytest.approx(gpu_demo_pack.SMOKE_SECONDS, abs=0.01)
    wav, _ = sf.read(takes[0], dtype="int16")
    assert not (wav % 2 ** 3).any()  # 13 significant bits: the 3 low bits are zero
    assert size == sum(f.stat().st_size for f in tmp_path.rglob("*") if f.is_file())


def test_check_out_limits(tmp_path):
    for i in range(gpu_demo_pack.MAX_FILES):
        (tmp_path / f"f{i}").write_text("x")
    assert gpu_demo_pack.main(["check-out", str(tmp_path)]) == 0
    (tmp_path / "one_too_many").write_text("x")
    assert gpu_demo_pack.main(["check-out", str(tmp_path)]) == 1


def test_gpu_demo_smoke(demo_data, tmp_path):
    if not (ROOT / "pretrained" / "whisper" / "tiny.en.pt").is_file():
        pytest.skip("pretrained/whisper/tiny.en.pt absent (cantor convert-whisper-ct2 makes it)")
    out = tmp_path / "out"
    env = {"CANTOR_DEMO_DATA": str(demo_data), "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1",
           "TMPDIR": str(tmp_path)}
    result = subprocess.run(["bash", str(ROOT / "bins" / "bench" / "gpu_demo.sh"), "--smoke", str(out)],
                            capture_output=True, text=True, env={**os.environ, **env}, timeout=1800)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    files = {f.name: f.stat().st_size for f in out.iterdir()}
    assert {"table.md", "timings.tsv", "metrics.tsv", "student_export.pt", "gpu_demo.log"} <= set(files)
    assert len(files) <= gpu_demo_pack.MAX_FILES
    assert max(files.values()) <= gpu_demo_pack.FILE_LIMIT
    table = (out / "table.md").read_text()
    assert "student, 1 step" in table and "teacher 2 steps, student 2 steps" in table
    exported = torch.load(out / "student_export.pt", map_location="cpu", weights_only=True)
    assert exported["student"] is True
    rows = (out / "metrics.tsv").read_text().splitlines()
    assert rows[0].startswith("model\toutput") and {r.split("\t")[0] for r in rows[1:]} == {
        "mu", "teacher", "student"}
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith("gpu_demo.")] == []  # work removed
