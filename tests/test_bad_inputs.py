"""The bad-input corpus: every way a user's files can be broken, built from real demo singing or
bytes, run through the entry points as a user runs them. Each case asserts the exit status, that
the failure is one line naming the file, that nothing is half-written, and (for a batch) that the
other files were still converted.

Stage 3 and ``cantor infer`` use the tiny random-weight experiment of tests/inference_fixtures.py;
stage 1 a two-singer corpus cut from the demo data; stage 2 the synthetic processed folder of
tests/synthetic_processed.py.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from bins import infer
from bins.svc import inference as stage3
from models.base.batch_convert import output_path
from models.base.checkpoint import latest_checkpoint, save_checkpoint, state_digest
from tests.inference_fixtures import CLIP, SR, write_conversion_setup
from utils.audio import load_audio

ROOT = Path(__file__).resolve().parent.parent
RUN_SH = ROOT / "egs" / "svc" / "DiffComoSVC" / "run.sh"
OTHER_CLIP = "ZH-Tenor-1/zh07/control.flac"


PROGRESS = re.compile(r"\|\s*\d+/\d+ \[")   # a tqdm bar: "...| 2/10 [00:01<00:03, ...]"


def run_cli(module, argv: list[str], capsys) -> tuple[int, list[str]]:
    """Parse ``argv`` and run ``module`` as its command line does; (exit status, stderr lines
    other than progress bars)."""
    parser = argparse.ArgumentParser()
    module.add_arguments(parser)
    try:
        code = module.run(parser.parse_args([str(a) for a in argv]))
    except SystemExit as e:          # argparse rejects a value with status 2
        code = e.code
    return code, [line for line in capsys.readouterr().err.splitlines()
                  if line.strip() and not PROGRESS.search(line)]


def error_lines(lines: list[str]) -> list[str]:
    """The stderr lines that report a failure (argparse's usage line is not one)."""
    return [line for line in lines if not line.startswith("usage:") and not line.startswith(" ")]


def no_temporaries(folder: Path) -> bool:
    return not any(p.name.startswith(".") and p.name.endswith(".tmp") for p in folder.rglob("*"))


# --- stage 3 and cantor infer ---------------------------------------------------------------------

@pytest.fixture(scope="module")
def conv(tmp_path_factory, demo_data):
    """A tiny teacher experiment, broken copies of its checkpoint, and a batch of good and bad
    sources."""
    root = tmp_path_factory.mktemp("bad_inputs")
    clip = write_conversion_setup(root, demo_data, seconds=1.5)
    good = latest_checkpoint(root / "teacher")
    state = torch.load(good, weights_only=True)

    def variant(name: str, edit) -> Path:
        path = root / name / "checkpoint" / good.name
        path.parent.mkdir(parents=True)
        edit(path)
        return path

    def flip_bytes(path: Path) -> None:   # bytes of a weight overwritten after the save
        data = bytearray(good.read_bytes())
        weight = next(v for v in state["model"].values() if v.numel() >= 256)
        at = data.find(weight.numpy().tobytes()[:64])
        assert at > 0
        data[at + 64:at + 96] = b"A" * 32
        path.write_bytes(bytes(data))

    def diverged(path: Path) -> None:     # NaN weights with a valid digest (save_checkpoint
        model = dict(state["model"])      # itself refuses to write them)
        key = next(k for k, v in model.items() if v.is_floating_point())
        model[key] = torch.full_like(model[key], float("nan"))
        payload = {**state, "model": model}
        torch.save({**payload, "sha256": state_digest(payload)}, path)

    def nan_output(path: Path) -> None:   # finite weights, but statistics that make NaN audio
        stats = json.loads(json.dumps(state["statistics"]))
        stats["demo"]["mel_max"] = [float("nan")] * len(stats["demo"]["mel_max"])
        save_checkpoint(path.parent, state["step"], {**state, "statistics": stats}, keep_last=0)

    def bad_header(path: Path) -> None:   # the pickled index's first opcodes overwritten
        data = bytearray(good.read_bytes())
        at = data.find(b"\x80\x02")       # pickle protocol 2, the start of data.pkl
        data[at:at + 4] = b"\xfe" * 4
        path.write_bytes(bytes(data))

    def undigested(weights) -> callable:  # no "sha256" entry, as a hand-made or foreign file
        def write(path: Path) -> None:
            model = {k: weights(v) if v.is_floating_point() else v
                     for k, v in state["model"].items()}
            torch.save({**{k: v for k, v in state.items() if k != "sha256"}, "model": model}, path)
        return write

    noise = torch.Generator().manual_seed(0)
    checkpoints = {
        "bad_header": variant("bad_header", bad_header),
        "undigested": variant("undigested", undigested(lambda v: v)),
        # finite garbage of a plausible size: the model sings full-scale noise
        "garbage": variant("garbage", undigested(
            lambda v: 3 * torch.randn(v.shape, generator=noise))),
        # random bytes read as float32 (NaN/inf zeroed): far beyond trained magnitudes
        "random_bytes": variant("random_bytes", undigested(lambda v: torch.nan_to_num(
            torch.randint(0, 256, (v.numel() * 4,), dtype=torch.uint8, generator=noise)
            .view(torch.float32).reshape(v.shape), nan=0.0, posinf=0.0, neginf=0.0))),
        "flipped": variant("flipped", flip_bytes),
        "truncated": variant("truncated", lambda p: p.write_bytes(good.read_bytes()[:5000])),
        "empty": variant("empty", lambda p: p.write_bytes(b"")),
        "diverged": variant("diverged", diverged),
        "nan_output": variant("nan_output", nan_output),
    }
    src = root / "batch"
    (src / "good").mkdir(parents=True)
    sf.write(str(src / "good" / "alto.wav"), clip, SR)
    tenor = load_audio(demo_data / OTHER_CLIP, 44100)[:int(1.3 * 44100)]
    sf.write(str(src / "good" / "tenor.flac"), tenor, 44100)      # another rate and format
    sf.write(str(src / "good" / "silence.wav"), np.zeros(SR, np.float32), SR)
    real_flac = (demo_data / CLIP).read_bytes()
    bad = {
        "empty.wav": b"",
        "garbage.wav": b"RIFF\x24\x00\x00\x00WAVEfmt " + bytes(range(256)) * 4,
        "truncated.flac": real_flac[:3000],
        "text.ogg": b"this is a text file, not audio\n" * 20,
    }
    for name, data in bad.items():
        (src / "bad" / name).parent.mkdir(exist_ok=True)
        (src / "bad" / name).write_bytes(data)
    sf.write(str(src / "bad" / "short.wav"), clip[:40], SR)             # shorter than one hop
    with_nan = clip.copy()
    with_nan[1000] = np.nan
    sf.write(str(src / "bad" / "nan.wav"), with_nan, SR, subtype="FLOAT")
    sf.write(str(src / "bad" / "blocked.wav"), clip, SR)   # its output folder will be a file
    return root, clip, checkpoints


def stage3_args(root: Path, out: Path, expt, *extra) -> list:
    return ["--infer_expt_dir", expt, "--infer_output_dir", out, "--infer_source_audio_dir",
            root / "batch", "--infer_target_speaker", "demo_A", *extra]


def test_stage3_batch_converts_every_good_file_and_names_each_bad_one(conv, tmp_path, capsys):
    root, clip, _ = conv
    out = tmp_path / "out"
    out.mkdir()
    (out / "bad_blocked").write_text("a file where the output folder should be")
    code, lines = run_cli(stage3, stage3_args(root, out, root / "teacher"), capsys)
    assert code == 1
    # Each failure is one line, logged as it happens ("skipped ...") and summed up at the end.
    failed = [line for line in lines if line.startswith("failed: ")]
    logged = [line.split("skipped ", 1)[1] for line in lines if "skipped " in line]
    assert sorted(logged) == sorted(line.removeprefix("failed: ") for line in failed)
    assert len(failed) + len(logged) == len(lines)
    bad = sorted(p for p in (root / "batch" / "bad").iterdir())
    assert len(failed) == len(bad)
    for path in bad:
        assert sum(str(path) in line for line in failed) == 1, (path, failed)
    by_name = {p.name: next(line for line in failed if str(p) in line) for p in bad}
    assert "cannot decode" in by_name["garbage.wav"] and "cannot decode" in by_name["empty.wav"]
    assert "NaN or infinite samples" in by_name["nan.wav"]
    assert "shorter than one hop" in by_name["short.wav"]
    assert f"{out / 'bad_blocked'} is a file, not a folder" in by_name["blocked.wav"]
    # The good files, silence included, were converted at the input's length.
    assert sf.info(str(out / "good_alto" / "good_alto_demo_A.wav")).frames == len(clip)
    assert sf.info(str(out / "good_tenor" / "good_tenor_demo_A.wav")).frames == int(1.3 * SR)
    silence, _ = sf.read(str(out / "good_silence" / "good_silence_demo_A.wav"))
    assert silence.shape == (SR,) and not silence.any()
    # Nothing at all for the bad ones, and no temporary left anywhere.
    assert sorted(p.name for p in out.iterdir()) == ["bad_blocked", "good_alto", "good_silence",
                                                     "good_tenor"]
    assert no_temporaries(out)


@pytest.mark.parametrize("case, expected", [
    ("flipped", "corrupt checkpoint (its SHA-256 no longer matches"),
    ("truncated", "not a readable checkpoint"),
    ("empty", "not a readable checkpoint"),
    ("diverged", "holds NaN or inf"),
    ("bad_header", "not a readable checkpoint (its index is corrupt or holds objects other than "
                   "tensors and plain data: Unsupported operand 254)"),
    ("undigested", "no SHA-256 digest (every checkpoint Cantor writes has one), so a corruption "
                   "cannot be detected; if you trust this file, pass --trust-checkpoint"),
    ("garbage", "no SHA-256 digest"),
])
def test_broken_checkpoints_are_refused_naming_the_file(conv, tmp_path, capsys, case, expected):
    root, _, checkpoints = conv
    out = tmp_path / "out"
    for module, argv in ((stage3, stage3_args(root, out, root / case)),
                         (infer, [root / "songs/alto/take.wav", "-m", root / case, "-s", "demo_A",
                                  "-o", out / "one.wav"])):
        code, lines = run_cli(module, argv, capsys)
        assert code == 2
        assert lines == [f"error: {checkpoints[case]}: " + lines[0].split(": ", 2)[2]]
        assert expected in lines[0] and "weights_only" not in lines[0]
        assert not out.exists()                  # refused before any conversion


def test_a_trusted_checkpoint_without_digest_converts(conv, tmp_path, capsys):
    root, clip, _ = conv
    for trust in (["--trust-checkpoint"], ["--set", "inference.trust_checkpoint=true"]):
        out = tmp_path / f"{trust[0].strip('-')}.wav"
        code, lines = run_cli(infer, [root / "songs/alto/take.wav", "-m", root / "undigested",
                                      "-s", "demo_A", "-o", out, *trust], capsys)
        assert code == 0, lines
        assert sf.info(str(out)).frames == len(clip)


@pytest.mark.parametrize("case, expected", [
    ("random_bytes", "beyond the 10000 that training produces (the file holds garbage)"),
    ("garbage", "broken weights, the first chunk synthesized for "),
])
def test_trusted_garbage_weights_stop_before_anything_is_written(conv, tmp_path, capsys, case,
                                                                 expected):
    """Trusted, a checkpoint without digest must still pass the weight sanity check; one that
    passes it but sings full-scale noise stops at its first chunk, in a batch too."""
    root, _, checkpoints = conv
    out = tmp_path / "out"
    for module, argv in ((stage3, stage3_args(root, out, root / case, "--trust-checkpoint")),
                         (infer, [root / "songs/alto/take.wav", "-m", root / case, "-s", "demo_A",
                                  "-o", out / "one.wav", "--trust-checkpoint"])):
        code, lines = run_cli(module, argv, capsys)
        assert code == 2
        assert lines == [f"error: {checkpoints[case]}: " + lines[0].split(": ", 2)[2]]
        assert expected in lines[0]
        assert not out.exists() or not any(p.is_file() for p in out.rglob("*"))


def test_non_finite_model_output_is_not_written(conv, tmp_path, capsys):
    root, _, checkpoints = conv
    song = root / "songs/alto/take.wav"
    out = tmp_path / "one.wav"
    code, lines = run_cli(infer, [song, "-m", root / "nan_output", "-s", "demo_A", "-o", out],
                          capsys)
    assert code == 1
    assert len(lines) == 1 and lines[0].startswith(f"error: {song}: ")
    assert "NaN/inf audio" in lines[0] and str(checkpoints["nan_output"]) in lines[0]
    assert not out.exists() and no_temporaries(tmp_path)


@pytest.mark.parametrize("option, value", [("-t", "-10000"), ("-t", "10000"), ("-t", "49")])
def test_infer_key_shift_beyond_four_octaves_is_refused(conv, tmp_path, capsys, option, value):
    root, _, _ = conv
    code, lines = run_cli(infer, [root / "songs/alto/take.wav", "-m", root / "teacher", "-s",
                                  "demo_A", option, value, "-o", tmp_path / "x.wav"], capsys)
    assert code == 2
    errors = error_lines(lines)
    assert len(errors) == 1 and errors[0].endswith(
        f"error: argument -t/--transpose: key shift must be within -48 .. +48 semitones "
        f"(4 octaves), got {int(value)}")
    assert not (tmp_path / "x.wav").exists()


def test_stage3_key_shift_and_output_folder_checked_before_any_work(conv, tmp_path, capsys):
    root, _, _ = conv
    code, lines = run_cli(stage3, stage3_args(root, tmp_path / "o", root / "teacher",
                                              "--infer_key_shift", "-10000"), capsys)
    assert code == 2 and len(error_lines(lines)) == 1
    assert "--infer_key_shift: key shift must be within -48 .. +48 semitones" in lines[-1]
    a_file = tmp_path / "out.txt"
    a_file.write_text("not a folder")
    code, lines = run_cli(stage3, stage3_args(root, a_file, root / "teacher"), capsys)
    assert code == 2
    assert lines == [f"error: --infer_output_dir {a_file}: is a file, not a folder"]
    assert a_file.read_text() == "not a folder"


def test_infer_output_that_is_a_folder_or_under_a_file(conv, tmp_path, capsys):
    root, _, _ = conv
    song = root / "songs/alto/take.wav"
    code, lines = run_cli(infer, [song, "-m", root / "teacher", "-s", "demo_A", "-o", tmp_path],
                          capsys)
    assert code == 2
    assert lines == [f"error: -o {tmp_path}: is a folder; give an output file name such as "
                     f"{tmp_path / 'out.wav'}"]
    a_file = tmp_path / "file"
    a_file.write_text("x")
    code, lines = run_cli(infer, [song, "-m", root / "teacher", "-s", "demo_A", "-o",
                                  a_file / "out.wav"], capsys)
    assert code == 2
    assert lines == [f"error: -o {a_file / 'out.wav'}: cannot be written, {a_file} is a file, "
                     f"not a folder"]
    assert no_temporaries(tmp_path)


def test_infer_unreadable_song_and_unknown_singer(conv, tmp_path, capsys):
    root, _, _ = conv
    song = root / "batch/bad/truncated.flac"
    code, lines = run_cli(infer, [song, "-m", root / "teacher", "-s", "demo_A", "-o",
                                  tmp_path / "x.wav"], capsys)
    assert code == 1 and len(lines) == 1 and lines[0].startswith(f"error: {song}: cannot decode")
    code, lines = run_cli(infer, [root / "songs/alto/take.wav", "-m", root / "teacher", "-s",
                                  "nobody", "-o", tmp_path / "x.wav"], capsys)
    assert code == 2 and lines == ["error: unknown target singer 'nobody'; this experiment knows: "
                                   "demo_A, demo_B"]
    code, lines = run_cli(infer, [root / "songs/alto/take.wav", "-m", tmp_path / "nowhere", "-s",
                                  "demo_A"], capsys)
    assert code == 2 and lines == [f"error: checkpoint not found: {tmp_path / 'nowhere'}"]
    assert not (tmp_path / "x.wav").exists()


@pytest.fixture()
def small_disk(tmp_path):
    """A 200 kB tmpfs at ``tmp_path/small`` (mounting needs root, as in CI; skipped otherwise),
    unmounted afterwards. Returns (its folder, fill): ``fill(n)`` leaves only ``n`` bytes free."""
    folder = tmp_path / "small"
    folder.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=200k", "tmpfs", str(folder)],
                       capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs (needs root): {r.stderr.strip()}")

    def fill(leave: int) -> None:
        (folder / "filler").write_bytes(b"\0" * (shutil.disk_usage(folder).free - leave))

    yield folder, fill
    subprocess.run(["umount", "-l", str(folder)], check=True)


def test_infer_on_a_full_disk_names_the_output_and_keeps_the_earlier_file(conv, small_disk,
                                                                           capsys):
    root, _, _ = conv
    folder, fill = small_disk
    out = folder / "out.wav"
    out.write_bytes(b"an earlier output")
    fill(8192)                                     # the 1.5 s output needs 66 kB
    code, lines = run_cli(infer, [root / "songs/alto/take.wav", "-m", root / "teacher", "-s",
                                  "demo_A", "-o", out], capsys)
    assert code == 1
    assert len(lines) == 1 and lines[0].startswith(f"error: -o {out}: cannot be written: No space "
                                                   f"left on device (")
    assert re.search(rf"\(\d+(\.\d)? k?B free in {re.escape(str(folder))}\)$", lines[0])
    assert out.read_bytes() == b"an earlier output" and no_temporaries(folder)


def test_stage3_on_a_full_disk_stops_naming_the_output(conv, small_disk, capsys):
    root, _, _ = conv
    folder, fill = small_disk
    fill(8192)
    code, lines = run_cli(stage3, ["--infer_expt_dir", root / "teacher", "--infer_output_dir",
                                   folder / "out", "--infer_source_audio_dir", root / "songs",
                                   "--infer_target_speaker", "demo_A"], capsys)
    assert code == 1
    out = folder / "out" / "alto_take" / "alto_take_demo_A.wav"
    assert lines[-1].startswith(f"error: {out}: cannot be written: No space left on device (")
    assert lines[-1].endswith("; stopped") and len(error_lines(lines)) == 1
    assert not out.exists() and no_temporaries(folder)


def test_outputs_that_cannot_be_written_are_refused_before_any_work(conv, capsys):
    root, _, _ = conv
    code, lines = run_cli(infer, [root / "songs/alto/take.wav", "-m", root / "teacher", "-s",
                                  "demo_A", "-o", "/proc/nope/out.wav"], capsys)
    assert code == 2 and lines == ["error: -o /proc/nope/out.wav: cannot be written, /proc is not "
                                   "writable (No such file or directory)"]
    code, lines = run_cli(stage3, stage3_args(root, Path("/proc/nope"), root / "teacher"), capsys)
    assert code == 2 and lines == ["error: /proc/nope: cannot be written, /proc is not writable "
                                   "(No such file or directory)"]


def test_infer_missing_song_is_reported_before_the_model_loads(conv, tmp_path, capsys):
    root, _, _ = conv
    song = tmp_path / "nowhere.wav"
    code, lines = run_cli(infer, [song, "-m", tmp_path / "no_model", "-s", "demo_A"], capsys)
    assert code == 2 and lines == [f"error: {song}: no such file; give the song to convert"]


def dead_pid() -> int:
    """The PID of a process that has exited."""
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


def plant_lock(output: Path, pid: int) -> Path:
    """A lock file of ``output`` as utils.io.output_lock writes it, held by ``pid``."""
    from utils.io import lock_path
    output.parent.mkdir(parents=True, exist_ok=True)
    lock = lock_path(output)
    lock.write_text(f"{socket.gethostname()} {pid}\n")
    return lock


def test_stage3_killed_mid_batch_resumes_without_converting_again(conv, tmp_path, capsys):
    root, clip, _ = conv
    src = tmp_path / "src"
    src.mkdir()
    for name in "abc":
        sf.write(str(src / f"{name}.wav"), clip, SR)
    out = tmp_path / "out"
    argv = ["--infer_expt_dir", root / "teacher", "--infer_output_dir", out,
            "--infer_source_audio_dir", src, "--infer_target_speaker", "demo_A"]
    first = out / "a" / "a_demo_A.wav"
    proc = subprocess.Popen([sys.executable, str(ROOT / "bins/svc/inference.py"), *map(str, argv)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=tmp_path)
    try:
        deadline = time.monotonic() + 300
        while not first.exists():
            assert proc.poll() is None and time.monotonic() < deadline, "stage 3 did not start"
            time.sleep(0.01)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    stamp = first.stat().st_mtime_ns
    # what a kill during a write leaves: a 0-byte temporary and the lock of a dead run
    (out / "b").mkdir(exist_ok=True)
    (out / "b" / ".b_demo_A.wav.k1ll3d9x.tmp").write_bytes(b"")
    plant_lock(out / "b" / "b_demo_A.wav", dead_pid())
    code, lines = run_cli(stage3, argv, capsys)
    assert code == 0 and not error_lines(lines)
    assert first.stat().st_mtime_ns == stamp                    # not converted again
    for name in "abc":
        assert sf.info(str(out / name / f"{name}_demo_A.wav")).frames == len(clip)
    assert not any(p.name.startswith(".") for p in out.rglob("*"))   # no temporary, no lock
    code, _ = run_cli(stage3, [*argv, "--overwrite"], capsys)
    assert code == 0 and first.stat().st_mtime_ns != stamp


def test_an_output_another_run_is_writing_is_named_in_a_warning(conv, tmp_path, capsys):
    root, clip, _ = conv
    out = tmp_path / "one.wav"
    lock = plant_lock(out, os.getpid())                    # a live process holds it
    code, lines = run_cli(infer, [root / "songs/alto/take.wav", "-m", root / "teacher", "-s",
                                  "demo_A", "-o", out], capsys)
    assert code == 0 and sf.info(str(out)).frames == len(clip)
    assert lines == [f"{out}: another run (pid {os.getpid()}) is writing it too; the one that "
                     f"finishes last replaces the other's output"]
    assert lock.exists()                                    # the other run's lock is left alone
    folder = tmp_path / "batch"
    held = output_path(folder, "alto_take", "demo_A")
    plant_lock(held, os.getpid())
    code, lines = run_cli(stage3, ["--infer_expt_dir", root / "teacher", "--infer_output_dir",
                                   folder, "--infer_source_audio_dir", root / "songs",
                                   "--infer_target_speaker", "demo_A"], capsys)
    assert code == 0 and not held.exists()
    assert f"skipped {root / 'songs/alto/take.wav'}: another run (pid {os.getpid()}) is writing " \
           f"{held}" in lines


def test_truncated_wav_and_a_folder_named_like_audio_are_warned_about(conv, tmp_path, capsys,
                                                                      caplog):
    root, clip, _ = conv
    src = tmp_path / "src"
    src.mkdir()
    whole = src / "cut.wav"
    sf.write(str(whole), clip, SR, subtype="PCM_16")
    data = whole.read_bytes()
    whole.write_bytes(data[:44 + 2 * (len(clip) // 2)])    # the second half lost
    (src / "folder.wav").mkdir()
    with caplog.at_level(logging.WARNING):
        code, _ = run_cli(stage3, ["--infer_expt_dir", root / "teacher", "--infer_output_dir",
                                   tmp_path / "out", "--infer_source_audio_dir", src,
                                   "--infer_target_speaker", "demo_A"], capsys)
    assert code == 0
    assert [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING] == [
        f"{src / 'folder.wav'}: skipped, a folder named like an audio file (the audio files in it "
        f"are still found)",
        f"{whole}: truncated, its header declares {len(clip)} samples but only "
        f"{len(clip) // 2} are present (50 %); using what is there"]
    assert sf.info(str(tmp_path / "out/cut/cut_demo_A.wav")).frames == len(clip) // 2
