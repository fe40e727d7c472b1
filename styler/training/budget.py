"""``styler train --budget``: the best style a wall-clock budget buys on this machine.

The budget covers the whole run, setup included. After setup the trainer times a few steps and a
validation on copies of its own state (``Trainer.measure``; nothing they change is kept), and
:func:`plan` turns what is left into a number of steps on the usual cosine schedule, with the
validations that pick the kept generator spread over the run. The chosen steps are written into
``run.json`` like any run's, so ``--steps N`` with the same options trains the same generator bit
for bit. If the machine slows down mid-run, the trainer stops at the deadline and keeps the best
validated generator so far.
"""

from __future__ import annotations

import copy
import io
import logging
import math
import re
import statistics
import threading
import time
from dataclasses import dataclass, replace
from typing import Callable

import torch

from styler.config import BUDGET, BudgetRecipe, TrainConfig
from styler.errors import ConfigError, TrainingError
from styler.training import distributed
from styler.training.data import first_read_seconds
from styler.training.report import timed
from styler.training.schedule import cosine_schedule

log = logging.getLogger(__name__)

_UNITS = {"s": 1.0, "sec": 1.0, "m": 60.0, "min": 60.0, "h": 3600.0}
_PART = re.compile(r"(\d+(?:\.\d+)?)\s*(h|min|m|sec|s)")


def parse_duration(text: str) -> float:
    """Seconds in ``90s``, ``5m``, ``1h``, ``1h30m``, ``2.5m`` or a plain number of seconds."""
    raw = str(text).strip().lower()
    if re.fullmatch(r"\d+(?:\.\d+)?", raw):
        seconds = float(raw)
    else:
        parts = _PART.findall(raw)
        if not parts or _PART.sub("", raw).strip():
            raise ConfigError(f"cannot read {text!r} as a duration: write it as 90s, 5m, 1h or 1h30m")
        seconds = sum(float(value) * _UNITS[unit] for value, unit in parts)
    if not math.isfinite(seconds) or seconds <= 0:
        raise ConfigError(f"a budget must be more than 0 seconds, got {text!r}")
    return seconds


def format_duration(seconds: float) -> str:
    """``4 min 30 s``, ``2 h 12 min``: how long something takes, for people."""
    seconds = max(0, round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours} h {minutes} min"
    if minutes:
        return f"{minutes} min {secs} s" if secs and minutes < 10 else f"{minutes} min"
    return f"{secs} s"


@dataclass(frozen=True)
class Timing:
    """What the trainer measured before planning (seconds)."""

    elapsed: float  # since the run started: setup and the probe
    step: float  # one training step once the process has settled (a median)
    # One validation event: the validation pass, the preview and checkpoint written with it, and
    # how much slower the step after it runs (0 without validation photos).
    validation: float
    finish: float  # writing the weights, the loss curve and the contact sheet
    decode: float = 0.0  # reading one training photo the first time (later reads hit the loader's cache)
    photos: int = 0  # training photos: each is decoded once in a run that reaches it
    batch_size: int = 1


@dataclass(frozen=True)
class Plan:
    steps: int
    val_every: int
    step_seconds: float
    # Seconds after the run's start at which training stops to leave time for the finish.
    stop_after: float
    timing: Timing | None = None  # what the plan rests on, recorded in run.json

    def to_dict(self) -> dict[str, float]:
        measured = {} if self.timing is None else {
            "setup_seconds": round(self.timing.elapsed, 2), "validation_seconds": round(self.timing.validation, 3),
            "finish_seconds": round(self.timing.finish, 2), "decode_seconds": round(self.timing.decode, 4)}
        return {"steps": self.steps, "val_every": self.val_every, "step_seconds": round(self.step_seconds, 4),
                "stop_after": round(self.stop_after, 1), **measured}


def budgeted(config: TrainConfig, seconds: float, device: torch.device, recipe: BudgetRecipe = BUDGET) -> TrainConfig:
    """``config`` for a run of ``seconds`` wall-clock seconds on ``device``: the recipe's crops and
    painting size for that machine (the trainer plans the steps once it has timed one)."""
    size = recipe.gpu_image_size if device.type == "cuda" else recipe.cpu_image_size
    return replace(config, budget_seconds=seconds, image_size=size, style_size=recipe.style_size)


def smallest_budget(timing: Timing) -> float:
    """Setup, the finish, reading the first batch's photos, one step and one validation: below
    this nothing can be trained."""
    first_batch = timing.decode * min(timing.photos, timing.batch_size)
    return timing.elapsed + timing.finish + timing.step + timing.validation + first_batch


def _steps_that_fit(seconds: float, timing: Timing, validations: int) -> int:
    """Steps whose compute, photo decoding and ``validations`` validation events fit ``seconds``."""
    left = seconds - validations * timing.validation
    rough = max(1, int(left / timing.step))
    # Each photo is decoded once, the first time it comes up; a short run may not reach them all.
    decoding = timing.decode * min(timing.photos, rough * timing.batch_size)
    return max(1, int((left - decoding) / timing.step))


def plan(budget: float, timing: Timing, recipe: BudgetRecipe = BUDGET) -> Plan:
    """Steps and validation cadence that fit ``budget`` seconds given ``timing``."""
    floor = smallest_budget(timing)
    if budget < floor:
        raise TrainingError(f"a budget of {format_duration(budget)} is shorter than setup plus one step here; the "
                            f"smallest budget that works on this machine is about {math.ceil(floor)}s")
    stop_after = budget - timing.finish
    usable = (stop_after - timing.elapsed) * recipe.safety
    validations = recipe.validations if timing.validation else 0
    steps = _steps_that_fit(usable, timing, validations)
    if steps < recipe.validations * 4:  # a short budget: fewer validations, more steps
        validations = min(validations, max(1, steps // 4))
        steps = _steps_that_fit(usable, timing, validations)
    val_every = max(1, math.ceil(steps / max(validations, 1)))
    return Plan(steps, val_every, timing.step, stop_after, timing)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@dataclass(frozen=True)
class Measurement:
    """What :func:`measure` timed on the trainer (seconds; see :class:`Timing`)."""

    step: float
    validation: float
    finish: float
    decode: float


def _timed(fn: Callable[[], object], device: torch.device) -> float:
    _sync(device)
    start = time.perf_counter()
    fn()
    _sync(device)
    return time.perf_counter() - start


def _step_times(trainer, batch: torch.Tensor, recipe: BudgetRecipe) -> list[float]:
    """Seconds of each timed step: ``probe_steps`` of them (and at least one after the first for
    each step of the discriminator's cadence), more while they add up to less than
    ``probe_seconds`` (a GPU's steps are cheap to time many of). Each runs at the next step count,
    as in training, so the discriminator learns on every ``d_every``-th of them; the count is
    restored."""
    times: list[float] = []
    start, least = trainer.step, max(recipe.probe_steps, trainer.config.d_every + 1)
    try:
        while len(times) < least or (len(times) < recipe.max_probe_steps and sum(times) < recipe.probe_seconds):
            trainer.step = start + len(times)
            times.append(_timed(lambda: trainer.train_step(batch), trainer.device))
    finally:
        trainer.step = start
    return times


def typical_step(times: list[float], updates: list[bool], d_every: int) -> float:
    """A step's seconds averaged over the discriminator's cadence: the median of the steps that
    update it and of those that do not, weighted 1 to ``d_every - 1``."""
    learning = [t for t, u in zip(times, updates) if u]
    rest = [t for t, u in zip(times, updates) if not u]
    if d_every == 1 or not learning or not rest:
        return statistics.median(times)
    return (statistics.median(learning) + (d_every - 1) * statistics.median(rest)) / d_every


def _step_seconds(trainer, batch: torch.Tensor, recipe: BudgetRecipe) -> tuple[float, float]:
    """A typical step, and how much longer the first step after a validation takes than a step
    of its kind (one that updates the discriminator or one that does not)."""
    times = _step_times(trainer, batch, recipe)  # the first comes right after a validation
    d_every = trainer.config.d_every
    updates = [(trainer.step + i) % d_every == 0 for i in range(len(times))]
    if len(times) == 1:
        return times[0], 0.0
    alike = [t for t, u in zip(times[1:], updates[1:]) if u == updates[0]] or times[1:]
    return typical_step(times[1:], updates[1:], d_every), max(0.0, times[0] - statistics.median(alike))


def _decode_seconds(trainer) -> float:
    """Seconds the loader spends reading a photo it has not cached yet. DataLoader workers on a
    CPU share its cores with the step, so there it all counts; beside a GPU it runs in parallel."""
    seconds = first_read_seconds(trainer.train_paths[:2], trainer.config.image_size)
    if trainer.device.type == "cuda":
        seconds /= max(1, trainer.config.num_workers)
    return seconds


def _probe(trainer, batch: torch.Tensor, recipe: BudgetRecipe) -> Measurement:
    device, images = trainer.device, trainer.preview_images
    for _ in range(recipe.warmup_steps):  # the allocator, kernel choices and first page faults settle
        trainer.train_step(batch)
    validation = _timed(trainer.validate, device) if trainer.val_images is not None else 0.0
    # Each validation comes with a preview of up to 8 photos and a checkpoint; the finish draws
    # a contact sheet of up to 16 and saves a checkpoint and the weights.
    preview = _timed(lambda: trainer.stylize(trainer.generator, images[:8]), device) if images is not None else 0.0
    checkpoint = _timed(lambda: torch.save(trainer.checkpoint_state(), io.BytesIO()), device)
    step, after_validation = _step_seconds(trainer, batch, recipe)
    event = validation + preview + checkpoint + after_validation if validation else 0.0
    finish = recipe.finish_seconds + 2 * checkpoint + 2 * preview
    return Measurement(step, event, finish, _decode_seconds(trainer))


def measure(trainer, recipe: BudgetRecipe = BUDGET) -> Measurement:
    """Time ``trainer``'s steps, a validation with its preview and checkpoint, and a photo's first
    read, on its own networks, then undo them: generator, discriminator, optimisers, scheduler,
    loss scaler and the loss's random draws are restored, so a budgeted run trains exactly as
    ``--steps N`` would."""
    parts = {name: getattr(trainer, name) for name in ("generator", "discriminator", "opt_g", "opt_d", "sched_g",
                                                       "scaler")}
    saved = {name: copy.deepcopy(part.state_dict()) for name, part in parts.items()}
    draws, rng = trainer.loss.draw_state(), torch.get_rng_state()
    images = trainer.preview_images
    batch = images.repeat(math.ceil(trainer.config.batch_size / len(images)), 1, 1, 1)[:trainer.config.batch_size]
    try:
        return _probe(trainer, batch, recipe)
    finally:
        for name, part in parts.items():
            part.load_state_dict(saved[name])
        trainer.loss.set_draw_state(draws)
        torch.set_rng_state(rng)


class Budgeted:
    """The budget's part of the trainer (a mixin like :class:`styler.training.resume.Resumable`;
    every attribute used here is set by ``Trainer.__init__``)."""

    def _plan_budget(self) -> None:
        """Time a few steps (undone) and a validation, then set the steps and the validation,
        checkpoint and preview cadence so the run ends within ``config.budget_seconds``."""
        with timed("timing a step to plan the budget"):
            probe = measure(self)
        step, validation, finish, decode = (distributed.broadcast_float(value, self.dist, self.device)
                                            for value in (probe.step, probe.validation, probe.finish, probe.decode))
        timing = Timing(time.perf_counter() - self.started, step, validation, finish, decode, len(self.train_paths),
                        self.config.batch_size)
        self.plan = plan(self.config.budget_seconds, timing)
        every = self.plan.val_every
        self.config = replace(self.config, steps=self.plan.steps, val_every=every, checkpoint_every=every,
                              preview_every=every if self.config.preview_every else 0)
        self.spec = replace(self.spec, config=self.config, plan=self.plan.to_dict())
        self.sched_g = cosine_schedule(self.opt_g, self.config.lr, self.config.steps)
        log.info("budget %s: %d steps of %.2fs planned", format_duration(self.config.budget_seconds),
                 self.plan.steps, step)

    def _deadline(self) -> float | None:
        """perf_counter() time at which a budgeted run stops training to leave time for its finish."""
        if not self.config.budget_seconds:
            return None
        if self.plan is not None:
            return self.started + self.plan.stop_after
        # A resumed budgeted run: what the budget has left after the time already trained.
        return self.started + max(0.0, self.config.budget_seconds - self.seconds) * BUDGET.safety

    def _cut_short(self, stop: threading.Event | None, deadline: float | None) -> str | None:
        if stop is not None and stop.is_set():
            return "stop"
        if deadline is not None and time.perf_counter() >= deadline and self.step < self.config.steps:
            return "deadline"
        return None
