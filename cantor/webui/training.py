"""The Train tab's work: stage 1, the teacher and the distilled student of a project, each run
through the recipe's ``run.sh`` as a background job (cantor/webui/jobs.py) whose output is parsed
for progress and the training loss; stopping terminates the run, and a later run of the same stage
resumes from its newest checkpoint.

A project lives in ``<models>/<name>/``: ``config.json`` (written for a dataset folder: the demo
recipe, egs/svc/DiffComoSVC/exp_config_demo.json, on that folder as a custom dataset), ``processed/``
(stage 1 features), ``teacher/`` and ``student/`` (experiments) and ``logs/<stage>.log``.
"""
from __future__ import annotations

import os
import re
import signal
import subprocess
import threading
from pathlib import Path

from utils.paths import PROJECT_ROOT

from cantor.webui.jobs import Cancelled, Job
from cantor.webui.sandbox import Sandbox

RUN_SH = PROJECT_ROOT / "egs/svc/DiffComoSVC/run.sh"
DATASET_RECIPE = PROJECT_ROOT / "egs/svc/DiffComoSVC/exp_config_demo.json"
STAGES = {"stage1": "stage 1 (features)", "teacher": "teacher", "student": "distilled student"}
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_BAR = re.compile(r"(\d+)/(\d+) \[")
_LOSS = re.compile(r"loss=([0-9.eE+-]+)")
STOP_GRACE_SECONDS = 10.0


class TrainRequestError(ValueError):
    """A training request that cannot start; the message says why."""


class StageFailed(ValueError):
    """A stage's run ended in an error; the message is the run's own "error: ..." line."""


def project_folder(sandbox: Sandbox, name: str) -> Path:
    """``<models>/<name>``. Raises TrainRequestError for a name that is not a plain folder name."""
    if not _NAME.match(name or ""):
        raise TrainRequestError(f"project name {name!r}: use letters, digits, '_', '-' and '.' "
                                f"(a plain folder name, at most 64 characters)")
    return sandbox.resolve(name, "models", "project folder")


def project_config(sandbox: Sandbox, name: str, dataset: str, config: str) -> Path:
    """The config a project trains with: ``config`` (a file inside the sandbox whose datasets also
    lie inside it), or for a ``dataset`` folder (``singer/song/take.wav``) a config written to
    ``<project>/config.json``. Exactly one of the two must be given.

    Raises: TrainRequestError, PathRefused, utils.config.ConfigError (an invalid config).
    """
    from utils.config import load_config
    from utils.io import save_json
    from utils.paths import resolve_path
    folder = project_folder(sandbox, name)
    if bool(dataset.strip()) == bool(config.strip()):
        raise TrainRequestError("give either a dataset folder or a config file, not both")
    if config.strip():
        path = sandbox.resolve(config, "data", "config file", kind="file")
        cfg = load_config(path)
        for ds in cfg.dataset:
            if ds not in cfg.dataset_path:
                raise TrainRequestError(f"{path}: dataset {ds!r} has no dataset_path entry")
            sandbox.resolve(resolve_path(cfg.dataset_path[ds]), "data", f"dataset {ds!r} of {path}",
                            kind="dir")
        return path
    root = sandbox.resolve(dataset, "data", "dataset folder", kind="dir")
    ds = re.sub(r"[^A-Za-z0-9_]", "_", root.name) or "dataset"
    path = folder / "config.json"
    save_json(path, {"base_config": str(DATASET_RECIPE), "dataset": [ds],
                     "dataset_path": {ds: str(root)}, "dataset_type": {ds: "custom"},
                     "log_dir": str(folder), "preprocess": {"processed_dir": str(folder / "processed")}})
    load_config(path)
    return path


def stage_command(sandbox: Sandbox, name: str, stage: str, config: Path, resume: bool,
                  max_steps: int | None) -> list[str]:
    """The run.sh command line of one stage of a project (outputs forced into the project folder).

    Raises: TrainRequestError for an unknown stage, a student without a trained teacher, or a
        fresh start over existing checkpoints.
    """
    from models.base.checkpoint import latest_checkpoint
    folder = project_folder(sandbox, name)
    if stage not in STAGES:
        raise TrainRequestError(f"unknown stage {stage!r}; one of {', '.join(STAGES)}")
    cmd = ["bash", str(RUN_SH), "--config", str(config), "--set", f"log_dir={folder}",
           "--set", f"preprocess.processed_dir={folder / 'processed'}"]
    if stage == "stage1":
        return cmd + ["--stage", "1"]
    cmd += ["--stage", "2", "--name", stage]
    if stage == "student":
        teacher = folder / "teacher"
        if latest_checkpoint(teacher) is None:
            raise TrainRequestError(f"distillation needs a trained teacher: {teacher} has no "
                                    f"checkpoint yet (train the teacher first)")
        cmd += ["--distill", "--set", f"model.teacher_model_path={teacher}"]
    newest = latest_checkpoint(folder / stage)
    if newest is not None:
        if not resume:
            raise TrainRequestError(f"{folder / stage} already has checkpoints (newest {newest.name});"
                                    f" tick resume to continue it, or use another project name")
        cmd.append("--resume")
    if max_steps:
        cmd += ["--set", f"train.max_steps={int(max_steps)}"]
    return cmd


def run_stage(job: Job, cmd: list[str], log_path: Path) -> str:
    """Run ``cmd`` (a run.sh command) for ``job``: progress and the loss curve
    (``job.metrics["loss"]``: [(step, loss)]) from its progress bars, its other lines in the job's
    log and in ``log_path``; cancelling terminates its whole process group (SIGTERM, then SIGKILL
    after :data:`STOP_GRACE_SECONDS`).

    Returns: the last status line. Raises: Cancelled; StageFailed with the run's own "error: ..."
        line (or its exit status) when it fails.
    """
    log_path.parent.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [str(PROJECT_ROOT)] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]),
        PYTHONUNBUFFERED="1")
    proc = subprocess.Popen(cmd, cwd=PROJECT_ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, start_new_session=True)

    def stop():
        for sig, delay in ((signal.SIGTERM, STOP_GRACE_SECONDS), (signal.SIGKILL, None)):
            if proc.poll() is not None:
                return
            try:
                os.killpg(proc.pid, sig)
            except ProcessLookupError:
                return
            if delay is not None:
                try:
                    proc.wait(delay)
                except subprocess.TimeoutExpired:
                    continue
                return

    job.on_cancel = lambda: threading.Thread(target=stop, daemon=True).start()
    if job.cancel_requested:
        job.on_cancel()
    losses = job.metrics.setdefault("loss", [])
    error = ""
    with open(log_path, "a", encoding="utf-8") as log_file:
        log_file.write(f"$ {' '.join(cmd)}\n")
        pending = b""
        while chunk := proc.stdout.read1(4096):
            pending += chunk
            *lines, pending = re.split(rb"[\r\n]", pending)
            for raw in lines:
                line = raw.decode("utf-8", "replace").rstrip()
                if not line:
                    continue
                bar = _BAR.search(line)
                if bar:
                    done, total = int(bar.group(1)), int(bar.group(2))
                    job.report(done / total if total else None, line.strip())
                    loss = _LOSS.search(line)
                    if loss and (not losses or losses[-1][0] != done):
                        losses.append((done, float(loss.group(1))))
                    continue
                log_file.write(line + "\n")
                job.add_log(line)
                if line.startswith("error: "):
                    error = line[len("error: "):]
    code = proc.wait()
    if job.cancel_requested:
        raise Cancelled()
    if code != 0:
        raise StageFailed(error or f"{' '.join(cmd[1:3])} exited with status {code}; the log is "
                                    f"{log_path}")
    return job.message


def tensorboard_command(folder: Path) -> str:
    """The command that shows a project's training curves."""
    return f"tensorboard --logdir {folder}"

