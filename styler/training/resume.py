"""Checkpointing and resuming a :class:`styler.training.trainer.Trainer` (a mixin: the state it saves
is the trainer's own), and turning Ctrl-C into a checkpoint at a step boundary."""

from __future__ import annotations

import contextlib
import json
import signal
import threading
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable, Iterator

import torch

from styler.config import LR_FLOOR, TrainConfig, default_weights_dir, from_dict, to_json
from styler.errors import ConfigError, TrainingError
from styler.io.files import check_writable, remove_stale_temps_in
from styler.io.weights import is_bundled_dir
from styler.training.runs import config_differences
from styler.training.schedule import cosine_schedule


@contextlib.contextmanager
def deferred_interrupt() -> Iterator[Callable[[], bool]]:
    """Turn the first Ctrl-C into a flag the training loop checks between steps, so the
    checkpoint it writes is never of a half-done step; a second Ctrl-C interrupts at once."""
    hit = [False]
    if threading.current_thread() is not threading.main_thread():
        yield lambda: False
        return

    def handler(_signum: int, _frame: object) -> None:
        if hit[0]:
            raise KeyboardInterrupt
        hit[0] = True

    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield lambda: hit[0]
    finally:
        signal.signal(signal.SIGINT, previous if previous is not None else signal.default_int_handler)


def saved_config(state: dict[str, Any]) -> TrainConfig:
    """The TrainConfig a checkpoint was written with."""
    return from_dict(TrainConfig, json.loads(state["config"]))


def check_weights_folder(folder: Path) -> None:
    """Never write into the package's bundled styles, also from a clone (its ``weights`` links there)."""
    if is_bundled_dir(folder):
        raise ConfigError(f"{folder} holds styler's bundled styles, inside the package; styles you train go "
                          f"to your weights folder ({default_weights_dir()}) or another folder you name")


def check_new_style(weights_path: Path, overwrite: bool) -> None:
    """Refuse to replace your style of that name unless ``overwrite``. A bundled style of that name
    is not replaced, only hidden: a name picks yours first."""
    if weights_path.exists() and not overwrite:
        raise ConfigError(f"a style named {weights_path.stem!r} already exists ({weights_path}); pick another "
                          f"--name, or pass --overwrite to replace it")


class Resumable:
    """Checkpoint methods of the trainer; every attribute used here is set by Trainer.__init__."""

    def _check_destination(self, resume: bool, force: bool, overwrite: bool) -> None:
        """Before any data is read: refuse to replace a style or a finished run unless
        ``overwrite``, to write into the package's bundled styles, or into a folder we cannot
        write; remove what a killed run of these names left half-written."""
        if resume:
            self._check_something_to_add()
        if not self.dist.is_main:
            return
        check_weights_folder(self.weights_path.parent)
        for folder, option in ((self.weights_path.parent, "--weights-dir"), (self.run_dir.path, "--run-dir")):
            check_writable(folder, option)
        self.run_dir.remove_stale_temps()
        remove_stale_temps_in(self.weights_path.parent, (self.weights_path.name,))
        if not resume:
            check_new_style(self.weights_path, overwrite)
            self._check_run_folder(force, overwrite)

    def _check_run_folder(self, force: bool, overwrite: bool) -> None:
        """A fresh run replaces an unfinished run only with ``force``, a finished one with either."""
        if not self.run_dir.has_checkpoint():
            return
        state = self.run_dir.load_checkpoint()
        if not state.get("finished") and not force:
            raise TrainingError(f"{self.run_dir.path} holds an unfinished run (step {state.get('step')}); "
                                f"continue it with --resume, or pass --force to start over")
        if state.get("finished") and not (force or overwrite):
            raise TrainingError(f"{self.run_dir.path} holds a finished run (step {state.get('step')}); train "
                                f"longer with --resume --steps N, or pass --overwrite to start over there")

    def _check_something_to_add(self) -> None:
        """Read the checkpoint up front (every rank), so "nothing to do" is said at once."""
        state = self._resume_state = self.run_dir.load_checkpoint()
        step, steps = int(state["step"]), self.config.steps
        saved_steps = saved_config(state).steps
        if state.get("finished") and steps <= saved_steps:
            early = " (stopped early)" if state.get("stopped_early") else ""
            raise TrainingError(f"{self.run_dir.path} finished at step {step}{early}; nothing to add: pass a "
                                f"larger --steps than {saved_steps} to train longer")
        if steps <= step:
            raise ConfigError(f"--steps {steps} is not beyond step {step}, where {self.run_dir.path} stopped")

    def _start(self) -> None:
        if not self.dist.is_main:
            return
        self.run_dir.reset()
        self.run_dir.write_spec(self.spec)

    def _resume(self, force: bool) -> None:
        saved = saved_config(self._resume_state)
        self._check_same_run(saved, force)
        self._load_checked(self._resume_state)
        if self.run_dir.spec_path.is_file():
            saved_spec = self.run_dir.read_spec()
            self.spec = replace(self.spec, schedule=saved_spec.schedule, init=saved_spec.init)
        if self.config.steps != saved.steps or self.config.lr != saved.lr:
            self._fresh_schedule()
        if self.dist.is_main:
            self.run_dir.truncate_metrics(self.step)
            self.run_dir.write_spec(self.spec)

    def _check_same_run(self, saved: TrainConfig, force: bool) -> None:
        """Other settings need ``force``; another architecture cannot be resumed at all."""
        differences = config_differences(saved, self.config)
        if differences and not force:
            raise ConfigError(f"{self.run_dir.path} was trained with other settings ({'; '.join(differences)}); "
                              f"resume with the same options, or pass --force")
        for part in ("generator", "discriminator"):
            if getattr(saved, part) != getattr(self.config, part):
                raise ConfigError(f"{self.run_dir.path} has another {part} ({to_json(getattr(saved, part))}); "
                                  f"not even --force resumes a run with another architecture: start a new run "
                                  f"(--init-from reuses a finished style's generator)")

    def _load_checked(self, state: dict[str, Any]) -> None:
        """:meth:`_load_state`, with a checkpoint that lacks keys or does not fit named in one line."""
        try:
            self._load_state(state)
        except (KeyError, RuntimeError, ValueError, TypeError) as exc:
            detail = " ".join(line.strip() for line in str(exc).splitlines() if line.strip())
            reason = f"{type(exc).__name__}: {detail[:200]}"
            raise TrainingError(f"{self.run_dir.checkpoint_path}: checkpoint is incomplete or does not fit this "
                                f"run ({reason}); delete it to start over") from exc

    def _load_state(self, state: dict[str, Any]) -> None:
        self.generator.load_state_dict(state["generator"])
        self.discriminator.load_state_dict(state["discriminator"])
        self.opt_g.load_state_dict(state["opt_g"])
        self.opt_d.load_state_dict(state["opt_d"])
        self.sched_g.load_state_dict(state["sched_g"])
        if state["scaler"] and self.scaler.is_enabled():
            self.scaler.load_state_dict(state["scaler"])
        self.best.load_state_dict(state["best"])
        self.step, self.samples, self.seconds = int(state["step"]), int(state["samples"]), float(state["seconds"])
        self.checkpoint_step = self.step
        self.stopped_early = bool(state["stopped_early"])
        self.last_losses = dict(state["losses"])
        self.skipped_paths.update(Path(p) for p in state["skipped"])
        self._set_rng_state(state["rng"])

    def _fresh_schedule(self) -> None:
        """The cosine the run would have followed had it been planned for the new ``steps`` (and
        ``lr``) from the start, at the current step: a finished run extended to more steps goes
        back up to that schedule's rate instead of training on at the floor it had reached."""
        self.sched_g = cosine_schedule(self.opt_g, self.config.lr, self.config.steps, self.step)
        self.stopped_early, self.best.evals_since = False, 0  # a longer run gets its patience back
        segment = {"from_step": self.step, "to_step": self.config.steps, "lr_start": self.opt_g.param_groups[0]["lr"],
                   "lr_end": self.config.lr * LR_FLOOR}
        self.spec = replace(self.spec, schedule=(*self.spec.schedule, segment))

    def _rng_state(self) -> dict[str, Any]:
        return {"torch": torch.get_rng_state(),
                "cuda": torch.cuda.get_rng_state_all() if self.device.type == "cuda" else [],
                "sliced": self.loss.draw_state()}

    def _set_rng_state(self, state: dict[str, Any]) -> None:
        torch.set_rng_state(state["torch"])
        if state["cuda"] and self.device.type == "cuda":
            torch.cuda.set_rng_state_all(state["cuda"])
        self.loss.set_draw_state(state["sliced"])

    def checkpoint_state(self) -> dict[str, Any]:
        """Everything mutable, as tensors and plain containers (safe for weights_only loading)."""
        return {
            "step": self.step, "samples": self.samples, "seconds": self.seconds,
            "finished": self.finished, "stopped_early": self.stopped_early, "config": to_json(self.config),
            "generator": self.generator.state_dict(), "discriminator": self.discriminator.state_dict(),
            "opt_g": self.opt_g.state_dict(), "opt_d": self.opt_d.state_dict(),
            "sched_g": self.sched_g.state_dict(),
            "scaler": self.scaler.state_dict() if self.scaler.is_enabled() else {},
            "rng": self._rng_state(), "best": self.best.state_dict(),
            "skipped": sorted(str(p) for p in self.skipped_paths), "losses": self.last_losses,
        }

    def save_checkpoint(self) -> None:
        if self.dist.is_main:
            self.run_dir.save_checkpoint(self.checkpoint_state())
            self.checkpoint_step = self.step
