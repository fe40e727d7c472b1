"""What ``styler train`` shows while it works: a spinner through the setup, then the progress
display (the step, the time left and the best validation first, the losses where the terminal has
room; all of them are in the run's metrics.jsonl anyway), the lines before and after the run.

On a terminal the bar is one line fitted to its width; elsewhere (a log file, a notebook's
``!styler train``) a plain line every ``every_s`` seconds, not every step.
"""

from __future__ import annotations

import contextlib
import logging
import time
from pathlib import Path
from typing import Any, Iterator

import click

from styler.cli.common import console, fail, print_json
from styler.config import BUDGET, TrainConfig

LOSS_KEYS = ("total", "content", "style", "adv", "temporal", "d")
BAR_WIDTH = 16


def clock(seconds: float) -> str:
    """``1:02:03`` or ``4:05``."""
    seconds = max(0, int(round(seconds)))
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60}:{rest % 60:02d}"


def fit(parts: list[str], width: int) -> str:
    """``parts`` joined by spaces, in order, as many as fit in ``width`` columns (never a cut part)."""
    out = ""
    for part in parts:
        candidate = f"{out} {part}" if out else part
        if len(candidate) > width:
            break
        out = candidate
    return out


class TrainProgress:
    """Shows each :class:`styler.training.trainer.StepReport`; ``deadline`` (a perf_counter time)
    makes the time left count down to a budget's end instead of extrapolating the step rate."""

    def __init__(self, total: int, first_step: int, quiet: bool, deadline: float | None = None,
                 every_s: float = 30.0) -> None:
        self.total, self.first_step, self.quiet = total, first_step, quiet
        self.deadline, self.every_s = deadline, every_s
        self.started = time.perf_counter()
        self._last_line = float("-inf")
        self.bar: Any = None

    def __enter__(self) -> "TrainProgress":
        if self.quiet or not console().is_terminal:
            return self
        from rich.progress import BarColumn, Progress, TextColumn

        self.bar = Progress(TextColumn("{task.fields[head]}"), BarColumn(bar_width=BAR_WIDTH),
                            TextColumn("{task.fields[tail]}"), console=console(), transient=False)
        self.bar.__enter__()
        self.task = self.bar.add_task("training", total=self.total, completed=self.first_step,
                                      head=self._head(self.first_step), tail="resumed" if self.first_step else "")
        return self

    def __exit__(self, *exc: object) -> None:
        if self.bar is not None:
            self.bar.__exit__(*exc)

    def _head(self, step: int) -> str:
        return f"step {step}/{self.total}"

    def left(self, step: int, steps_per_s: float) -> str:
        if self.deadline is not None:
            return f"left {clock(self.deadline - time.perf_counter())}"
        if steps_per_s <= 0 or step <= self.first_step:
            return "eta --:--"
        return f"eta {clock((self.total - step) / steps_per_s)}"

    def parts(self, step: int, losses: dict[str, float], steps_per_s: float, best_val: float | None) -> list[str]:
        """What a line shows, most important first."""
        parts = [self.left(step, steps_per_s)]
        if best_val is not None:
            parts.append(f"best val {best_val:.3g}")
        parts += [f"{k}={losses[k]:.3g}" for k in LOSS_KEYS if k in losses]
        parts.append(f"{steps_per_s:.2f} it/s")
        return parts

    def update(self, step: int, losses: dict[str, float], steps_per_s: float, best_val: float | None) -> None:
        if self.quiet:
            return
        parts = self.parts(step, losses, steps_per_s, best_val)
        if self.bar is not None:
            head = self._head(step)
            room = console().width - len(head) - BAR_WIDTH - 3
            self.bar.update(self.task, completed=step, head=head, tail=fit(parts, room))
            return
        now = time.perf_counter()
        if now - self._last_line >= self.every_s or step >= self.total:
            self._last_line = now
            click.echo(" ".join([self._head(step), *parts]), err=True)

    def say(self, message: str) -> None:
        """A line above the bar (or a plain line)."""
        if self.quiet:
            return
        if self.bar is not None:
            self.bar.console.print(message, markup=False, highlight=False)
        else:
            click.echo(message, err=True)


@contextlib.contextmanager
def setup_status(quiet: bool) -> Iterator[None]:
    """A spinner naming each setup step (reading the photos, the loss network, the painting's
    statistics), which take tens of seconds before the first step. Only on a terminal: a log file
    gets -v's lines. -v's lines print above the spinner instead of running into it."""
    out = console()
    if quiet or not out.is_terminal:
        yield
        return
    logger = logging.getLogger("styler")
    echo = [h for h in logger.handlers if not isinstance(h, logging.NullHandler)]

    class Follow(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if record.name == STEP_LOGGER and record.levelno == logging.DEBUG:
                status.update(f"preparing training: {record.getMessage()}")
            if any(record.levelno >= level for level in levels):
                status.console.print(record.getMessage(), markup=False, highlight=False)

    handler = Follow()
    levels = [h.level for h in echo]
    with out.status("preparing training") as status:
        for h in echo:
            h.setLevel(logging.CRITICAL + 1)  # Follow prints them, above the spinner
        logger.addHandler(handler)
        try:
            yield
        finally:
            logger.removeHandler(handler)
            for h, level in zip(echo, levels):
                h.setLevel(level)


# The logger of the setup steps (styler.training.report.timed): what the spinner names.
STEP_LOGGER = "styler.training.report"


def run_training(trainer: Any, as_json: bool, quiet: bool) -> None:
    config = trainer.config
    if not quiet and not as_json:
        _say_start(trainer)
    try:
        with TrainProgress(config.steps, trainer.step, quiet or as_json, trainer._deadline()) as bar:
            predicted = [False]

            def on_step(report) -> None:
                best = trainer.best.loss
                bar.update(report.step, report.losses, report.steps_per_s, best)
                if not predicted[0] and report.step - trainer_first >= PREDICT_AFTER:
                    predicted[0] = True
                    bar.say(_prediction(trainer, report.steps_per_s))

            trainer_first = trainer.step
            result = trainer.run(on_step)
    except KeyboardInterrupt:
        if not trainer.dist.is_main:
            raise
        fail(_interrupted_message(trainer), 130)  # after the bar has closed: the last line seen
    if trainer.dist.is_main:
        _report_training(result, trainer, as_json, quiet)


# Steps timed before the run's length is predicted (the first ones include warm-up).
PREDICT_AFTER = 5
# On a CPU, a run predicted to take longer than this names the ways to make it shorter.
LONG_RUN_S = 30 * 60


def _say_start(trainer: Any) -> None:
    """The run folder (and a budget's plan) before the first step, and that a new style hides a
    bundled one of its name."""
    from styler.io.weights import bundled_style
    from styler.training.budget import format_duration

    cfg = trainer.config
    where = f"run folder {trainer.run_dir.path}"
    if trainer.plan is not None:
        click.echo(f"budget {format_duration(cfg.budget_seconds)}: {cfg.steps} steps of "
                   f"{trainer.plan.step_seconds:.2f}s planned ({cfg.image_size} px crops, painting at "
                   f"{cfg.style_size} px); {where}", err=True)
    else:
        click.echo(where, err=True)
    if bundled_style(trainer.name) and not trainer.weights_path.exists():
        click.echo(f"note: your {trainer.name!r} will hide the bundled {trainer.name!r}; to keep both, "
                   f"pass another --name", err=True)


def _prediction(trainer: Any, steps_per_s: float) -> str:
    """One line, once: how long the whole run will take, and on a CPU, how to make a long one short."""
    from styler.training.budget import format_duration

    cfg = trainer.config
    left = (cfg.steps - trainer.step) / max(steps_per_s, 1e-9)
    line = f"about {format_duration(left)} more for {cfg.steps} steps at {steps_per_s:.2f} steps/s"
    if trainer.device.type == "cpu" and not cfg.budget_seconds and left > LONG_RUN_S:
        line += ("; on a CPU --budget 10m trains the best style it can in 10 minutes "
                 f"(or --image-size {BUDGET.cpu_image_size} makes each step cheaper)")
    return line


def _interrupted_message(trainer: Any) -> str:
    if not trainer.checkpoint_step:
        return f"interrupted at step {trainer.step} before the first checkpoint; nothing to resume"
    saved = ("checkpoint saved" if trainer.checkpoint_step == trainer.step
             else f"last checkpoint at step {trainer.checkpoint_step}")
    return f"interrupted at step {trainer.step}; {saved}, resume with: styler train --resume {trainer.run_dir.path}"


def _report_training(result: Any, trainer: Any, as_json: bool, quiet: bool) -> None:
    config = trainer.config
    if as_json:
        print_json({"weights": str(result.weights_path.absolute()), "steps": result.steps,
                    "planned_steps": config.steps, "seconds": round(result.seconds, 1), "losses": result.losses,
                    "skipped_images": [str(Path(p).absolute()) for p in result.skipped_images],
                    "features": config.features.value, "best_step": result.best_step, "val_loss": result.val_loss,
                    "stopped_early": result.stopped_early, "cut_short": result.cut_short,
                    "init_from": config.init_from, "budget_seconds": config.budget_seconds or None,
                    "plan": trainer.plan.to_dict() if trainer.plan else None,
                    "run_dir": str(Path(result.run_dir).absolute())})
    elif not quiet:
        click.echo(_summary(result, config), err=False)


def _summary(result: Any, config: TrainConfig) -> str:
    skipped = result.skipped_images
    extra = ""
    if skipped:
        names = ", ".join(str(p) for p in skipped[:3]) + (f" and {len(skipped) - 3} more" if len(skipped) > 3 else "")
        extra = f", skipped {len(skipped)} unreadable image(s): {names}"
    best = (f"; best validation loss {result.val_loss:.4g} at step {result.best_step}"
            if result.best_step is not None else "")
    stop = {None: "", "deadline": f" (the budget's deadline came at step {result.steps} of {config.steps})",
            "stop": f" (stopped at step {result.steps} of {config.steps})"}[result.cut_short]
    if result.stopped_early:
        stop = " (stopped early: no improvement)"
    return (f"saved {result.weights_path} after {result.steps} steps in {result.seconds:.0f}s{stop}{extra}"
            f"{best}; run folder {result.run_dir}")
