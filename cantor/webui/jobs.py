"""The web UI's job queue: long work (conversions, batches, training runs) runs on background
worker threads, one job at a time per lane, so the page never waits on it. Each job reports its
progress and a one-line message, keeps a log tail, can be cancelled, and ends done, failed (with
the same one-line error the command line prints) or cancelled."""
from __future__ import annotations

import itertools
import logging
import queue
import threading
import traceback
from dataclasses import dataclass, field
from typing import Any, Callable

log = logging.getLogger(__name__)

QUEUED, RUNNING, DONE, FAILED, CANCELLED = "queued", "running", "done", "failed", "cancelled"
LOG_LINES = 200
KEEP_RESULTS = 20  # ended jobs whose results (audio paths, figures) stay in memory


class Cancelled(BaseException):
    """Raised inside a job's work when its cancellation was requested (a BaseException, so that
    the per-file error handling of a batch does not take it for a bad file)."""


@dataclass
class Job:
    """One piece of work. ``progress`` is a fraction in [0, 1]; ``result`` is what the work
    returned; ``error`` the one-line message of a failure; ``metrics`` free data the work
    publishes while running (e.g. the training loss curve)."""

    id: int
    lane: str
    title: str
    work: Callable[["Job"], Any] = field(repr=False)
    state: str = QUEUED
    progress: float = 0.0
    message: str = "waiting in the queue"
    result: Any = None
    error: str = ""
    log: list[str] = field(default_factory=list)
    metrics: dict = field(default_factory=dict)
    _cancel: threading.Event = field(default_factory=threading.Event, repr=False)
    _done: threading.Event = field(default_factory=threading.Event, repr=False)
    on_cancel: Callable[[], None] | None = field(default=None, repr=False)

    @property
    def ended(self) -> bool:
        return self.state in (DONE, FAILED, CANCELLED)

    @property
    def cancel_requested(self) -> bool:
        return self._cancel.is_set()

    def report(self, progress: float | None = None, message: str | None = None) -> None:
        """Publish progress (clipped to [0, 1]) and/or a status line."""
        if progress is not None:
            self.progress = min(max(float(progress), 0.0), 1.0)
        if message is not None:
            self.message = message

    def add_log(self, line: str) -> None:
        self.log.append(line)
        del self.log[:-LOG_LINES]

    def check_cancel(self) -> None:
        """Raise :class:`Cancelled` when cancellation was requested (call between work steps)."""
        if self._cancel.is_set():
            raise Cancelled()

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the job ended; False on timeout."""
        return self._done.wait(timeout)

    def status_line(self) -> str:
        if self.state == FAILED:
            return f"job {self.id} failed: {self.error}"
        if self.state == QUEUED:
            return f"job {self.id} {self.title}: {self.message}"
        return f"job {self.id} {self.title}: {self.state}, {100 * self.progress:.0f} %: {self.message}"


class JobQueue:
    """Background workers, one thread per lane (e.g. "convert" and "train", so a training run
    does not hold conversions back); jobs of one lane run in submission order.

    Args:
        lanes: lane names.
    """

    def __init__(self, lanes: tuple[str, ...] = ("convert", "train")):
        self._ids = itertools.count(1)
        self._jobs: dict[int, Job] = {}
        self._lock = threading.Lock()
        self._queues = {lane: queue.Queue() for lane in lanes}
        for lane, q in self._queues.items():
            threading.Thread(target=self._worker, args=(q,), name=f"webui-{lane}", daemon=True).start()

    def submit(self, lane: str, title: str, work: Callable[[Job], Any]) -> Job:
        """Queue ``work(job)`` on ``lane``; returns the job at once. Only the newest
        :data:`KEEP_RESULTS` ended jobs keep their results."""
        with self._lock:
            job = Job(next(self._ids), lane, title, work)
            self._jobs[job.id] = job
            ended = sorted((j for j in self._jobs.values() if j.ended), key=lambda j: -j.id)
            for old in ended[KEEP_RESULTS:]:
                old.result = None
            waiting = sum(1 for j in self._jobs.values() if j.lane == lane and not j.ended) - 1
        job.message = f"waiting in the queue ({waiting} ahead)" if waiting else "starting"
        self._queues[lane].put(job)
        return job

    def get(self, job_id: int) -> Job:
        """Raises KeyError naming an unknown job id."""
        try:
            return self._jobs[int(job_id)]
        except (KeyError, ValueError, TypeError):
            raise KeyError(f"no job {job_id!r}") from None

    def jobs(self) -> list[Job]:
        """Every job, newest first."""
        with self._lock:
            return sorted(self._jobs.values(), key=lambda j: -j.id)

    def cancel(self, job_id: int) -> Job:
        """Request cancellation: a queued job never starts, a running one stops at its next
        check (a subprocess job is terminated through its ``on_cancel``)."""
        job = self.get(job_id)
        if job.ended:
            return job
        job._cancel.set()
        job.message = "cancelling"
        if job.on_cancel is not None:
            job.on_cancel()
        return job

    def _worker(self, q: queue.Queue) -> None:
        while True:
            job: Job = q.get()
            if job.cancel_requested:
                self._finish(job, CANCELLED, "cancelled before it started")
                continue
            job.state = RUNNING
            job.message = "running"
            try:
                job.result = job.work(job)
            except Cancelled:
                self._finish(job, CANCELLED, "cancelled")
            except Exception as e:  # a failed job must not kill its lane; the UI shows the message
                job.error = one_line_error(e)
                log.error("job %d (%s) failed: %s\n%s", job.id, job.title, job.error,
                          traceback.format_exc())
                self._finish(job, FAILED, job.error)
            else:
                job.progress = 1.0
                self._finish(job, DONE, job.message if job.message != "running" else "done")

    @staticmethod
    def _finish(job: Job, state: str, message: str) -> None:
        job.state, job.message = state, message
        job._done.set()


def one_line_error(e: BaseException) -> str:
    """The command line's one-line message for an error: the text of a user error (Cantor's
    error classes are ValueError or OSError subclasses whose text names the file and the reason),
    "Type: text" for anything else."""
    text = " ".join(str(e).split())
    if isinstance(e, (ValueError, OSError)) and text:
        return text
    return f"{type(e).__name__}: {text}" if text else type(e).__name__
