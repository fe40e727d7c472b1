"""The training progress display: the step, the time left and the best validation first, the
losses where the terminal has room (all of them are in the run's metrics.jsonl anyway).

On a terminal a one-line bar fitted to its width; elsewhere (a log file, a notebook's
``!styler train``) a plain line every ``every_s`` seconds, not every step.
"""

from __future__ import annotations

import time
from typing import Any

import click

from styler.cli.common import console

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
