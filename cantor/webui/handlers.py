"""What the web UI's buttons do, free of Gradio layout: each handler checks its request (paths
through the sandbox, experiment and singer names), queues the long work as a job and reports on it.
Refused or failed requests raise :class:`RequestError` with the command line's one-line message;
the Gradio layer (cantor/webui/app.py) shows it."""
from __future__ import annotations

import dataclasses
import tempfile
from pathlib import Path
from typing import Iterator

from models.base.converter import AUTOSHIFT
from models.base.singer_mix import SingerMixError, file_label, parse_singer_mix

from cantor.webui import conversion, experiments, training
from cantor.webui.jobs import FAILED, Job, JobQueue, one_line_error
from cantor.webui.sandbox import Sandbox

POLL_SECONDS = 0.25


class RequestError(ValueError):
    """A refused or failed request; the message is one line saying why."""


def f0_extractors() -> tuple[str, ...]:
    """The pitch trackers the config schema allows (preprocess.f0_extractor)."""
    from utils.schema import PreprocessConfig
    field = next(f for f in dataclasses.fields(PreprocessConfig) if f.name == "f0_extractor")
    return field.metadata["choices"]


def _checked(fn):
    """Turn a user error raised by ``fn`` into RequestError with its one-line message."""
    try:
        return fn()
    except RequestError:
        raise
    except (ValueError, OSError, KeyError) as e:
        raise RequestError(one_line_error(e) if not isinstance(e, KeyError) else e.args[0]) from None


class WebUI:
    """The UI's state: the sandbox (models and data folders), the job queue, the torch device and a
    private folder for converted songs (Gradio serves them from its own cache).

    Args:
        models, data: the folders every path must lie in; ``models`` holds experiments and
            projects, ``data`` the songs and datasets.
        device: torch device for conversions (None: cuda when present, else cpu).
    """

    def __init__(self, models: str | Path, data: str | Path, device: str | None = None):
        self.sandbox = Sandbox({"models": models, "data": data})
        self.jobs = JobQueue(("convert", "train"))
        self.device = device
        self.results = Path(tempfile.mkdtemp(prefix="cantor-webui-"))

    # --- models ------------------------------------------------------------------------------

    def experiments(self) -> list[experiments.Experiment]:
        return experiments.find_experiments(self.sandbox)

    def models_table(self) -> list[list]:
        """One row per experiment: name, kind, step, singers, checkpoint file, checkpoints kept,
        exports, folder."""
        return [[e.name, e.kind, e.step, ", ".join(e.singers), str(e.file), e.checkpoints,
                 e.exports, str(e.folder)] for e in self.experiments()]

    def experiment(self, name: str) -> experiments.Experiment:
        """The experiment ``name`` (its path below the models folder). Raises RequestError."""
        def find():
            folder = experiments.experiment_folder(self.sandbox, name or "")
            return experiments.describe(folder, name)
        return _checked(find)

    # --- convert -----------------------------------------------------------------------------

    def _converter_settings(self, name, steps, f0_extractor):
        exp = self.experiment(name)
        steps = int(steps) if steps not in (None, "") else None
        if steps is not None and steps < 1:
            raise RequestError(f"sampler steps must be at least 1, got {steps}")
        if f0_extractor and f0_extractor not in f0_extractors():
            raise RequestError(f"unknown F0 extractor {f0_extractor!r}; one of "
                               f"{', '.join(f0_extractors())}")
        return exp, steps, f0_extractor or None

    @staticmethod
    def _key_shift(key_shift, autoshift: bool) -> float | str:
        return AUTOSHIFT if autoshift else float(key_shift or 0)

    def _check_singers(self, exp, singers: list[str]) -> None:
        if not singers:
            raise RequestError("choose a target singer")
        for s in singers:
            try:
                parse_singer_mix(s, exp.singers)
            except SingerMixError as e:
                raise RequestError(str(e)) from None

    @staticmethod
    def _retrieval(index_rate, protect) -> tuple[float, float | None]:
        """(index rate, protect) of the Convert tab, range-checked (RequestError)."""
        rate = float(index_rate or 0.0)
        if not 0.0 <= rate <= 1.0:
            raise RequestError(f"index rate must be within 0 .. 1, got {rate}")
        if protect in (None, ""):
            return rate, None
        if not 0.0 <= float(protect) <= 0.5:
            raise RequestError(f"protect must be within 0 .. 0.5, got {protect}")
        return rate, float(protect)

    def submit_convert(self, song: str | None, name: str, singer: str, key_shift, autoshift: bool,
                       steps, f0_extractor: str | None, index_rate=0.0, protect=None) -> Job:
        """Queue the conversion of an uploaded or recorded ``song`` (a file in Gradio's cache) to
        ``singer`` (a name or a mix "A:0.7,B:0.3"), with the feature-retrieval ``index_rate`` and
        ``protect`` (inference.index_rate / protect; protect None: the experiment's).

        Raises: RequestError for no song, an unknown experiment or singer, bad steps, an index
            rate or protect out of range."""
        if not song:
            raise RequestError("no song: upload or record one first")
        exp, steps, f0_extractor = self._converter_settings(name, steps, f0_extractor)
        self._check_singers(exp, [singer])
        index_rate, protect = self._retrieval(index_rate, protect)
        source = Path(song)
        shift = self._key_shift(key_shift, autoshift)

        def work(job: Job):
            job.report(0.01, f"loading {exp.name}")
            converter = experiments.load_converter(exp.folder, self.device, steps, f0_extractor,
                                                   index_rate, protect)
            out = self.results / str(job.id) / f"{source.stem}_{file_label(singer)}.wav"
            return conversion.convert_song(job, converter, source, source.name, singer, shift, out)

        return self.jobs.submit("convert", f"convert {source.name} -> {singer}", work)

    # --- batch -------------------------------------------------------------------------------

    def submit_batch(self, name: str, folder: str, singers: list[str], key_shift, autoshift: bool,
                     steps, f0_extractor: str | None, output: str) -> Job:
        """Queue the conversion of every song below ``folder`` (in the data folder) to every
        singer, into ``output`` (in the models folder).

        Raises: RequestError for a path outside the sandbox, no songs, unknown singers."""
        exp, steps, f0_extractor = self._converter_settings(name, steps, f0_extractor)
        self._check_singers(exp, list(singers or []))
        src = _checked(lambda: self.sandbox.resolve(folder, "data", "source folder", kind="dir"))
        out = _checked(lambda: self.sandbox.resolve(output or "converted", "models", "output folder"))
        sources = _checked(lambda: conversion.folder_sources(self.sandbox, src))
        shift = self._key_shift(key_shift, autoshift)

        def work(job: Job):
            job.report(0.0, f"loading {exp.name}")
            converter = experiments.load_converter(exp.folder, self.device, steps, f0_extractor)
            return conversion.convert_batch(job, converter, sources, list(singers), shift, out)

        return self.jobs.submit("convert", f"batch {src.name} -> {', '.join(singers)}", work)

    # --- train -------------------------------------------------------------------------------

    def submit_train(self, project: str, stage: str, dataset: str, config: str, resume: bool,
                     max_steps) -> Job:
        """Queue one stage of a project through run.sh.

        Raises: RequestError for a bad name, paths outside the sandbox, an invalid config, a
            student without teacher or a fresh start over checkpoints."""
        def prepare():
            cfg = training.project_config(self.sandbox, project, dataset or "", config or "")
            steps = int(max_steps) if max_steps not in (None, "", 0) else None
            cmd = training.stage_command(self.sandbox, project, stage, cfg, bool(resume), steps)
            return cmd, training.project_folder(self.sandbox, project)
        cmd, folder = _checked(prepare)
        log_path = folder / "logs" / f"{stage}.log"
        return self.jobs.submit("train", f"{project}: {training.STAGES[stage]}",
                                lambda job: training.run_stage(job, cmd, log_path))

    def train_job(self, job_id) -> Job | None:
        """The train job ``job_id``, else the newest train job, else None."""
        if job_id not in (None, ""):
            try:
                return self.jobs.get(job_id)
            except KeyError:
                pass
        return next((j for j in self.jobs.jobs() if j.lane == "train"), None)

    # --- jobs --------------------------------------------------------------------------------

    def cancel(self, job_id) -> str:
        """Request cancellation of a job; returns its status line. Raises RequestError."""
        if job_id in (None, ""):
            raise RequestError("no job to cancel")
        return _checked(lambda: self.jobs.cancel(job_id).status_line())

    def jobs_table(self) -> list[list]:
        """id, lane, title, state, percent done, message of every job, newest first."""
        return [[j.id, j.lane, j.title, j.state, round(100 * j.progress), j.error or j.message]
                for j in self.jobs.jobs()]

    def follow(self, job: Job) -> Iterator[Job]:
        """Yield ``job`` every :data:`POLL_SECONDS` until it ends (the caller reports progress).

        Raises: RequestError with the job's error when it failed."""
        while not job.wait(POLL_SECONDS):
            yield job
        if job.state == FAILED:
            raise RequestError(job.error)
        yield job

