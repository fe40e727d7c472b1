"""Checkpointing and resuming a :class:`styler.training.trainer.Trainer` (a mixin: the state it saves
is the trainer's own), and turning Ctrl-C into a checkpoint at a step boundary."""

from __future__ import annotations

import contextlib
import json
import signal
import threading
from pathlib import Path
from typing import Any, Callable, Iterator

import torch

from styler.config import TrainConfig, from_dict, to_json, train_config_v1
from styler.errors import ConfigError, TrainingError
from styler.training.runs import config_differences


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


class Resumable:
    """Checkpoint methods of the trainer; every attribute used here is set by Trainer.__init__."""

    def _start(self, force: bool) -> None:
        if not self.dist.is_main:
            return
        if self.run_dir.has_checkpoint() and not force:
            state = self.run_dir.load_checkpoint()
            if not state.get("finished"):
                raise TrainingError(f"{self.run_dir.path} holds an unfinished run (step {state.get('step')}); "
                                    f"continue it with --resume, or pass --force to start over")
        self.run_dir.reset()
        self.run_dir.write_spec(self.spec)

    def _resume(self, force: bool) -> None:
        state = self.run_dir.load_checkpoint()
        saved_fields = json.loads(state["config"])
        saved = from_dict(TrainConfig, train_config_v1(saved_fields) if state["version"] == 1 else saved_fields)
        differences = config_differences(saved, self.config)
        if differences and not force:
            raise ConfigError(f"{self.run_dir.path} was trained with other settings ({'; '.join(differences)}); "
                              f"resume with the same options, or pass --force")
        self.generator.load_state_dict(state["generator"])
        self.discriminator.load_state_dict(state["discriminator"])
        self.opt_g.load_state_dict(state["opt_g"])
        self.opt_d.load_state_dict(state["opt_d"])
        self.sched_g.load_state_dict(state["sched_g"])
        self.sched_g.T_max = self.config.steps  # --force with new --steps stretches the schedule
        if state["scaler"] and self.scaler.is_enabled():
            self.scaler.load_state_dict(state["scaler"])
        self.best.load_state_dict(state["best"])
        self.step, self.samples, self.seconds = int(state["step"]), int(state["samples"]), float(state["seconds"])
        self.checkpoint_step = self.step
        self.stopped_early = bool(state["stopped_early"])
        self.last_losses = dict(state["losses"])
        self.skipped_paths.update(Path(p) for p in state["skipped"])
        self._set_rng_state(state["rng"])
        if self.dist.is_main:
            self.run_dir.truncate_metrics(self.step)
            self.run_dir.write_spec(self.spec)

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
