"""The page's training jobs: one runs at a time on a worker thread, the others wait in order.

A job is a :class:`styler.training.trainer.Trainer` run, as ``styler train`` runs it; Stop sets
the event its ``run(stop=...)`` watches, so the run ends after the current step and keeps the best
generator so far. What the page shows (state, place in the queue, losses, time left) is read from
the job while it runs.
"""

from __future__ import annotations

import logging
import secrets
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from styler.config import TrainConfig
from styler.errors import StylerError
from styler.training.runs import RunDir

log = logging.getLogger(__name__)

ACTIVE = ("queued", "preparing", "running", "stopping")
MAX_POINTS = 400  # loss-curve points sent to the page; longer runs are thinned evenly


@dataclass(frozen=True)
class JobSpec:
    """A training run the page asked for, with its inputs already checked and on disk."""

    config: TrainConfig
    style: Path
    content_dir: Path
    run_dir: Path

    @property
    def name(self) -> str:
        return self.config.name


class Job:
    def __init__(self, spec: JobSpec) -> None:
        self.id, self.spec = secrets.token_hex(8), spec
        self.state, self.error, self.weights = "queued", "", ""
        self.stop = threading.Event()
        self.step, self.rate = 0, 0.0
        self.steps = spec.config.steps  # a budget's plan sets it once the trainer is built
        self.deadline: float | None = None  # perf_counter() time a budget's run stops training
        self.losses: list[tuple[int, float]] = []
        self.best: tuple[int, float] | None = None  # (step, validation loss) of the generator kept so far

    def on_step(self, report: Any, trainer: Any) -> None:
        self.step, self.rate = report.step, report.steps_per_s
        # The loss validation ranks generators by (no adversarial term), so the curve shows what "best" means.
        self.losses.append((report.step, report.losses.get("perceptual", report.losses.get("total", 0.0))))
        if trainer.best.loss is not None:
            self.best = (trainer.best.step, trainer.best.loss)

    def latest_preview(self) -> Path | None:
        previews = sorted(RunDir(self.spec.run_dir).previews_dir.glob("step_*.png"))
        return previews[-1] if previews else None

    def view(self, ahead: int) -> dict[str, Any]:
        """What the page shows of this job."""
        steps = self.steps
        points = self.losses[::max(1, len(self.losses) // MAX_POINTS)]
        if self.losses and points[-1] != self.losses[-1]:
            points.append(self.losses[-1])
        preview = self.latest_preview()
        eta = (steps - self.step) / self.rate if self.rate > 0 else None
        if self.deadline is not None:  # the trainer stops at the deadline even when its steps run slow
            left = max(0.0, self.deadline - time.perf_counter())
            eta = left if eta is None else min(eta, left)
        eta = None if eta is None else round(eta, 1)
        return {"id": self.id, "name": self.spec.name, "state": self.state, "ahead": ahead, "step": self.step,
                "steps": steps, "budget": self.spec.config.budget_seconds, "eta": eta,
                "losses": points, "best": self.best, "error": self.error, "weights": self.weights,
                "preview": preview.stem if preview else None}


class JobQueue:
    """Jobs in the order they came; ``build`` makes each one's Trainer when its turn comes."""

    def __init__(self, build: Callable[[JobSpec], Any]) -> None:
        self._build = build
        self._jobs: list[Job] = []
        self._cond = threading.Condition()
        self._closed = False
        self._thread = threading.Thread(target=self._work, name="styler-ui-training", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def submit(self, spec: JobSpec) -> Job:
        job = Job(spec)
        with self._cond:
            self._jobs.append(job)
            self._cond.notify_all()
        return job

    def get(self, job_id: str) -> Job | None:
        return next((job for job in self._jobs if job.id == job_id), None)

    def busy_names(self) -> set[str]:
        """Style names that a waiting or running job will write."""
        return {job.spec.name for job in self._jobs if job.state in ACTIVE}

    def views(self) -> list[dict[str, Any]]:
        views, ahead = [], 0
        with self._cond:
            for job in self._jobs:
                views.append(job.view(ahead if job.state == "queued" else 0))
                ahead += job.state in ACTIVE
        return views

    def stop(self, job: Job) -> None:
        """A waiting job is cancelled; a running one ends after its current step, keeping its best generator."""
        with self._cond:
            if job.state == "queued":
                job.state = "cancelled"
            elif job.state in ACTIVE:
                job.stop.set()
                job.state = "stopping" if job.state == "running" else job.state

    def close(self) -> None:
        """Cancel waiting jobs, stop the running one (it saves its best generator) and wait for it."""
        with self._cond:
            self._closed = True
            for job in self._jobs:
                job.state = "cancelled" if job.state == "queued" else job.state
                job.stop.set()
            self._cond.notify_all()
        if self._thread.is_alive():
            self._thread.join()

    def _next(self) -> Job | None:
        with self._cond:
            while True:
                if self._closed:
                    return None
                job = next((job for job in self._jobs if job.state == "queued"), None)
                if job is not None:
                    job.state = "preparing"
                    return job
                self._cond.wait()

    def _work(self) -> None:
        while (job := self._next()) is not None:
            self._run(job)

    def _run(self, job: Job) -> None:
        try:
            trainer = self._build(job.spec)
            with self._cond:
                if job.stop.is_set():  # stopped while the photos and the loss network loaded: nothing trained
                    job.state = "cancelled"
                    return
                # The deadline the CLI's bar counts down to (None without a budget).
                job.state, job.steps, job.deadline = "running", trainer.config.steps, trainer._deadline()
            result = trainer.run(lambda report: job.on_step(report, trainer), stop=job.stop)
        except StylerError as exc:
            job.state, job.error = "failed", str(exc)
            return
        except Exception as exc:  # the server outlives a job that breaks; the traceback goes to the log
            log.exception("training job %s failed", job.spec.name)
            job.state, job.error = "failed", f"{type(exc).__name__}: {exc}"
            return
        job.weights = str(result.weights_path)
        if result.val_loss is not None:  # a stopped run validates its last step before keeping the best
            job.best = (result.best_step, result.val_loss)
        # A budget's deadline ends a run as planned; only Stop leaves it "stopped".
        job.state = "stopped" if result.cut_short == "stop" else "finished"
