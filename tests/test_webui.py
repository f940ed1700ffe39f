"""``cantor webui`` through its HTTP API (Gradio's Python client), on real demo takes and tiny
random-weight experiments: the convert, batch and models flows, the one-line errors, the refusal of
paths outside the models/data folders (``..``, absolute paths, symlinks) and of an oversized
upload; the job queue's order and cancellation; the Train tab's run.sh commands and the parsing of
a run's progress, loss and errors."""
from __future__ import annotations

import socket
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from tests.webui_fixtures import MAX_UPLOAD_MB, SR, start


LOCAL = ("127.0.0.1", "::1", "localhost")


@pytest.fixture(scope="module")
def running(tmp_path_factory, demo_data):
    """The UI, in a process whose connections to anywhere but this machine fail (and are
    recorded in ``outbound``)."""
    outbound = []
    connect = socket.socket.connect

    def local_only(sock, address):
        if sock.family in (socket.AF_INET, socket.AF_INET6) and address[0] not in LOCAL:
            outbound.append(address)
            raise OSError(f"network cut by the test: {address}")
        return connect(sock, address)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(socket.socket, "connect", local_only)
        ui = start(tmp_path_factory.mktemp("webui"), demo_data)
        ui.outbound = outbound
        yield ui
        ui.app.close()


@pytest.fixture(scope="module")
def client(running):
    from gradio_client import Client
    return Client(running.url, verbose=False)


def _error(client, *args, api_name):
    from gradio_client.exceptions import AppError
    with pytest.raises(AppError) as e:
        client.predict(*args, api_name=api_name)
    return str(e.value)


def test_convert_flow_gives_audio_of_the_source_length(client, running):
    from gradio_client import handle_file
    song = running.data / "songs" / "ZH-Alto-1_zh01.wav"
    job, status, audio, download, rtf, plot = client.predict(
        handle_file(str(song)), "tiny/teacher", "demo_B", 3, False, 2, "dio", api_name="/convert")
    wav, sr = sf.read(audio)
    assert sr == SR and len(wav) == sf.info(str(song)).frames
    assert np.sqrt(np.mean(wav ** 2)) > 1e-4 and np.all(np.isfinite(wav))
    assert Path(download).read_bytes() == Path(audio).read_bytes()
    assert "ZH-Alto-1_zh01.wav -> demo_B (4.0 s, key shift +3 semitones, diffusion teacher, " \
           "2 euler steps, cpu)" in status
    stages = {row[0]: row[1] for row in rtf["data"]}
    assert set(stages) == {"features", "acoustic", "vocoder", "total"}
    assert all(v > 0 for v in stages.values())
    assert stages["total"] == pytest.approx(stages["features"] + stages["acoustic"]
                                            + stages["vocoder"], abs=2e-4)
    assert plot["type"] == "matplotlib" and plot["plot"].startswith("data:image/")
    assert running.ui.jobs.get(job).state == "done"
    from cantor.webui.experiments import _converters
    (converter,) = _converters.values()          # the F0 extractor asked for, not the trained one
    assert converter.cfg.preprocess.f0_extractor == "dio" and converter.steps == 2


def test_student_with_autoshift_and_experiment_info(client, running):
    from gradio_client import handle_file
    singers, steps, f0 = client.predict("tiny/student", api_name="/experiment_info")
    assert [c[0] for c in singers["choices"]] == ["demo_A", "demo_B"]
    assert steps == 1 and f0 == "parselmouth"
    song = running.data / "songs" / "ZH-Tenor-1_zh07.wav"
    _, status, audio, *_ = client.predict(handle_file(str(song)), "tiny/student", "demo_B", 0, True,
                                          None, None, api_name="/convert")
    assert "consistency-distilled student, 1 consistency steps" in status
    assert "key shift +0" not in status          # autoshift moved it to demo_B's 400 Hz median
    assert sf.info(audio).frames == sf.info(str(song)).frames


def test_convert_errors_are_the_command_lines_one_liners(client, running):
    from gradio_client import handle_file
    song = handle_file(str(running.data / "songs" / "ZH-Alto-1_zh01.wav"))
    msg = _error(client, song, "tiny/teacher", "nobody", 0, False, None, None, api_name="/convert")
    assert "unknown target singer 'nobody'; this experiment knows: demo_A, demo_B" in msg
    broken = handle_file(str(running.data / "songs" / "broken.wav"))
    msg = _error(client, broken, "tiny/teacher", "demo_A", 0, False, None, None,
                 api_name="/convert")
    assert "broken.wav" in msg and "\n" not in msg
    msg = _error(client, song, "nowhere", "demo_A", 0, False, None, None, api_name="/convert")
    assert "experiment 'nowhere': no such folder" in msg


def test_convert_with_a_singer_mix_and_the_index(client, running, tmp_path):
    from gradio_client import handle_file
    from bins.index import build
    from tests.inference_fixtures import write_training_features
    song = handle_file(str(running.data / "songs" / "ZH-Alto-1_zh01.wav"))
    msg = _error(client, song, "tiny/teacher", "demo_A", 0, False, None, None, 0.5, 0.33,
                 api_name="/convert")
    assert "no feature-retrieval index for this model" in msg and "\n" not in msg
    msg = _error(client, song, "tiny/teacher", "demo_A:0.5,nobody:1", 0, False, None, None,
                 api_name="/convert")
    assert "unknown target singer 'nobody'" in msg
    write_training_features(tmp_path)
    assert build(running.models / "tiny" / "teacher", tmp_path) == 0
    _, status, audio, *_ = client.predict(song, "tiny/teacher", "demo_A:0.7,demo_B:0.3", 0, True,
                                          None, None, 0.5, 0.2, api_name="/convert")
    assert "-> demo_A:0.7,demo_B:0.3" in status
    assert sf.info(audio).frames == sf.info(str(running.data / "songs" / "ZH-Alto-1_zh01.wav")).frames
    from cantor.webui.experiments import _converters
    (converter,) = _converters.values()
    assert converter.retrieval is not None and converter.cfg.inference.protect == 0.2


def test_batch_flow_converts_every_song_to_every_singer(client, running):
    job, status, rows = client.predict("tiny/student", "songs", ["demo_A", "demo_B"], 0, False,
                                       None, None, "converted/batch1", api_name="/batch")
    out = running.models / "converted" / "batch1"
    for name in ("ZH-Alto-1_zh01", "ZH-Tenor-1_zh07"):
        for singer in ("demo_A", "demo_B"):
            wav = out / name / f"{name}_{singer}.wav"
            assert sf.info(str(wav)).frames == sf.info(str(running.data / "songs" / f"{name}.wav")).frames
    assert "converted 4 of 6 files" in status and "2 failed" in status
    results = {r[0]: r[1] for r in rows["data"]}
    assert results["converted/batch1/ZH-Alto-1_zh01/ZH-Alto-1_zh01_demo_B.wav"] == "converted"
    failed = [r for f, r in rows["data"] if f.endswith("broken.wav")]
    assert len(failed) == 2 and all("broken.wav: cannot decode audio" in r for r in failed)
    assert running.ui.jobs.get(job).progress == 1.0


def test_models_flow_lists_the_experiments(client, running):
    table, *_ = client.predict(api_name="/models")
    rows = {r[0]: r for r in table["data"]}
    assert set(rows) == {"tiny/teacher", "tiny/student"}
    assert rows["tiny/teacher"][1:4] == ["teacher", 20, "demo_A, demo_B"]
    assert rows["tiny/student"][1] == "student"
    assert rows["tiny/student"][4].endswith("tiny/student/export/step-00000020.pt")


@pytest.mark.parametrize("folder, why", [
    ("../../etc", "outside the folders this UI may use"),
    ("/etc", "outside the folders this UI may use"),
    ("escape", "outside the folders this UI may use (through a symlink)"),
    ("songs_bad", "passwd.wav is a symlink leading outside"),
])
def test_batch_refuses_paths_outside_the_sandbox(client, folder, why):
    msg = _error(client, "tiny/student", folder, ["demo_A"], 0, False, None, None, "converted",
                 api_name="/batch")
    assert why in msg


def test_other_paths_are_refused_too(client, running):
    msg = _error(client, "tiny/student", "songs", ["demo_A"], 0, False, None, None,
                 "../../../tmp/out", api_name="/batch")
    assert msg.startswith("output folder '../../../tmp/out' is outside")
    msg = _error(client, "../../etc/passwd", api_name="/experiment_info")
    assert "outside the folders this UI may use" in msg
    msg = _error(client, "proj", "../../etc", "", True, None, api_name="/train_stage1")
    assert msg.startswith("dataset folder '../../etc' is outside")
    msg = _error(client, "proj", "", "/etc/passwd", True, None, api_name="/train_stage1")
    assert msg.startswith("config file '/etc/passwd' is outside")
    msg = _error(client, "../up", "songs", "", True, None, api_name="/train_stage1")
    assert "project name '../up'" in msg


def test_files_outside_the_uploads_are_not_served_nor_taken(running):
    import httpx
    api = running.url + "gradio_api"
    for path in ("/etc/passwd", str(running.models / "tiny/teacher/checkpoint/step-00000020.pt")):
        assert httpx.get(f"{api}/file={path}").status_code == 403
    event = httpx.post(f"{api}/call/convert", json={"data": [
        {"path": "/etc/passwd", "meta": {"_type": "gradio.FileData"}}, "tiny/teacher", "demo_A", 0,
        False, None, None, 0, 0.33]}).json()["event_id"]
    reply = httpx.get(f"{api}/call/convert/{event}", timeout=60).text
    assert "event: error" in reply and "not uploaded by a user" in reply


def test_oversized_upload_is_refused(running, tmp_path):
    import httpx
    big = tmp_path / "big.wav"
    sf.write(str(big), np.zeros(int(MAX_UPLOAD_MB * 1024 * 1024 / 2) + SR, dtype=np.int16), SR)
    with big.open("rb") as f:
        r = httpx.post(running.url + "gradio_api/upload", files={"files": ("big.wav", f)})
    assert r.status_code == 413 and "maximum allowed size" in r.text


def test_sandbox_resolves_inside_and_refuses_outside(tmp_path):
    from cantor.webui.sandbox import PathRefused, Sandbox
    (tmp_path / "data" / "a").mkdir(parents=True)
    (tmp_path / "models").mkdir()
    (tmp_path / "outside").mkdir()
    (tmp_path / "data" / "link").symlink_to(tmp_path / "outside")
    (tmp_path / "data" / "inner").symlink_to(tmp_path / "models")
    box = Sandbox({"data": tmp_path / "data", "models": tmp_path / "models"})
    assert box.resolve("a", "data", "folder", kind="dir") == tmp_path / "data" / "a"
    assert box.resolve("a/../a/new.wav", "data", "output") == tmp_path / "data" / "a" / "new.wav"
    assert box.resolve("inner", "data", "folder", kind="dir") == tmp_path / "models"
    assert box.resolve(str(tmp_path / "models"), "data", "folder") == tmp_path / "models"
    for text, why in (("../outside", "outside"), ("link", "through a symlink"),
                      ("link/../../data", "outside"), ("a/../../models/../outside", "outside"),
                      ("", "no path given"), ("a\0b", "NUL"), ("a/missing", "no such folder")):
        with pytest.raises(PathRefused, match=why):
            box.resolve(text, "data", "folder", kind="dir")


def test_the_server_reached_nothing_outside_this_machine(running, client):
    # After every flow above (tests run in file order): no connection left this machine.
    client.predict(api_name="/models")
    assert running.outbound == []


# --- the job queue --------------------------------------------------------------------------------

def test_jobs_run_in_order_and_cancel():
    from cantor.webui.jobs import JobQueue
    queue = JobQueue(("work",))
    release, order = threading.Event(), []

    def blocking(job):
        order.append(job.id)
        while not release.wait(0.01):
            job.check_cancel()

    first = queue.submit("work", "first", blocking)
    second = queue.submit("work", "second", lambda job: order.append(job.id) or 42)
    third = queue.submit("work", "third", lambda job: order.append(job.id))
    assert third.message == "waiting in the queue (2 ahead)"
    queue.cancel(third.id)
    release.set()
    assert first.wait(5) and second.wait(5) and third.wait(5)
    assert (first.state, second.state, second.result) == ("done", "done", 42)
    assert third.state == "cancelled" and order == [first.id, second.id]
    running = queue.submit("work", "cancelled while running", blocking)
    release.clear()
    while running.state != "running":
        running.wait(0.01)
    queue.cancel(running.id)
    assert running.wait(5) and running.state == "cancelled"
    failing = queue.submit("work", "failing", lambda job: 1 / 0)
    assert failing.wait(5) and failing.error == "ZeroDivisionError: division by zero"
    assert "job 5 failed: ZeroDivisionError" in failing.status_line()
    with pytest.raises(KeyError, match="no job 99"):
        queue.get(99)


def test_only_the_newest_results_are_kept():
    from cantor.webui.jobs import KEEP_RESULTS, JobQueue
    queue = JobQueue(("work",))
    jobs = []
    for i in range(KEEP_RESULTS + 2):
        jobs.append(queue.submit("work", f"job {i}", lambda job: [job.id] * 1000))
        assert jobs[-1].wait(5)
    queue.submit("work", "one more", lambda job: None).wait(5)
    assert [j.result is None for j in jobs] == [True, True] + [False] * KEEP_RESULTS
    assert jobs[-1].result == [jobs[-1].id] * 1000


# --- training -------------------------------------------------------------------------------------

def test_stage_commands_of_a_project(running):
    from cantor.webui import training
    box = running.ui.sandbox
    cfg = training.project_config(box, "proj", "songs", "")
    folder = running.models / "proj"
    assert cfg == folder / "config.json"
    from utils.config import load_config
    loaded = load_config(cfg)
    assert loaded.dataset == ["songs"] and loaded.dataset_path["songs"] == str(running.data / "songs")
    assert loaded.log_dir == str(folder) and loaded.preprocess.processed_dir == str(folder / "processed")
    cmd = training.stage_command(box, "proj", "teacher", cfg, resume=True, max_steps=5)
    assert cmd[:2] == ["bash", str(training.RUN_SH)] and "--resume" not in cmd
    assert cmd[cmd.index("--name") + 1] == "teacher" and "train.max_steps=5" in cmd
    with pytest.raises(training.TrainRequestError, match="needs a trained teacher"):
        training.stage_command(box, "proj", "student", cfg, True, None)
    teacher = running.models / "tiny" / "teacher"
    (folder / "teacher").symlink_to(teacher)
    try:
        with pytest.raises(training.TrainRequestError, match="tick resume"):
            training.stage_command(box, "proj", "teacher", cfg, resume=False, max_steps=None)
        assert "--resume" in training.stage_command(box, "proj", "teacher", cfg, True, None)
        student = training.stage_command(box, "proj", "student", cfg, True, None)
        assert "--distill" in student and f"model.teacher_model_path={folder / 'teacher'}" in student
    finally:
        (folder / "teacher").unlink()
    with pytest.raises(training.TrainRequestError, match="either a dataset folder or a config"):
        training.project_config(box, "proj", "songs", "proj/config.json")


FAKE_RUN = r"""
import sys, time
for step in range(1, 4):
    sys.stderr.write(f"\rteacher:  {step * 33}%|###| {step}/3 [00:0{step}<00:00, 2.0step/s, loss={1.0 / step:.4f}]")
    sys.stderr.flush()
    time.sleep(0.05)
print("\nINFO saved step-00000003.pt", flush=True)
if sys.argv[1] == "fail":
    print("error: train.json: no utterance left", file=sys.stderr)
    sys.exit(2)
if sys.argv[1] == "hang":
    time.sleep(60)
"""


def test_run_stage_parses_progress_loss_and_errors(tmp_path):
    from cantor.webui import training
    from cantor.webui.jobs import JobQueue
    script = tmp_path / "fake.py"
    script.write_text(FAKE_RUN)
    queue = JobQueue(("train",))
    log = tmp_path / "logs" / "teacher.log"
    ok = queue.submit("train", "ok", lambda job: training.run_stage(
        job, [sys.executable, str(script), "ok"], log))
    assert ok.wait(30) and ok.state == "done", ok.error
    assert ok.metrics["loss"] == [(1, 1.0), (2, 0.5), (3, pytest.approx(0.3333, abs=1e-4))]
    assert ok.progress == 1.0 and "INFO saved step-00000003.pt" in ok.log
    assert "INFO saved step-00000003.pt" in log.read_text()
    bad = queue.submit("train", "bad", lambda job: training.run_stage(
        job, [sys.executable, str(script), "fail"], log))
    assert bad.wait(30) and bad.state == "failed"
    assert bad.error == "train.json: no utterance left"
    hang = queue.submit("train", "hang", lambda job: training.run_stage(
        job, [sys.executable, str(script), "hang"], log))
    while not hang.metrics.get("loss") or len(hang.metrics["loss"]) < 3:
        hang.wait(0.05)
    queue.cancel(hang.id)
    assert hang.wait(20) and hang.state == "cancelled"


def test_cantor_webui_command_refuses_a_missing_folder(tmp_path):
    import subprocess
    root = Path(__file__).resolve().parent.parent
    r = subprocess.run([sys.executable, "-m", "cantor.cli", "webui", "--models", str(tmp_path / "no"),
                        "--data", str(tmp_path)], cwd=root, capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and f"error: --models {tmp_path / 'no'}: no such folder" in r.stderr
    r = subprocess.run([sys.executable, "-m", "cantor.cli", "--help"], cwd=root, capture_output=True,
                       text=True, timeout=120)
    assert "webui" in r.stdout
