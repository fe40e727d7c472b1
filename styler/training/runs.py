"""Run directories: what a training run leaves on disk so it can be watched and resumed.

``runs/<name>/`` in the data folder (:func:`default_run_dir`, beside your styles) holds
``run.json`` (the config and paths, enough to resume with only the folder), ``checkpoint.pt``
(everything mutable: networks, optimisers, scheduler, step, RNG states, data position),
``metrics.jsonl`` (one JSON line per logged step), ``previews/`` and, at the end,
``loss_curve.png`` and ``contact_sheet.png``.

Checkpoints are written with ``torch.save`` and read with ``torch.load(weights_only=True)``:
only tensors and plain containers, so loading one never unpickles arbitrary objects. Every
write goes to a temp file in the same folder, is fsynced, then renamed over the old file, so
a ``kill -9`` at any moment leaves either the previous or the new complete checkpoint.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch

from styler.config import FORMAT_VERSION, TrainConfig, default_data_dir, from_dict, to_json
from styler.errors import ConfigError, TrainingError
from styler.io.files import atomic_path, remove_stale_temps_in

CHECKPOINT_FORMAT = "styler-run-checkpoint"
CHECKPOINT_VERSION = 2
# Options that change how a run is watched or executed but not what it computes: they may
# differ when resuming without --force.
# "steps" may change too: a resumed run then trains to the new length on a fresh schedule.
RESUME_SAFE_FIELDS = frozenset({"log_every", "val_every", "patience", "checkpoint_every", "preview_every",
                                "num_workers", "compile", "init_from", "steps"})


def default_run_dir(name: str) -> Path:
    """``runs/<name>`` in the data folder, beside your styles, whatever the working folder."""
    return default_data_dir() / "runs" / name


def find_run_dir(name_or_path: Path | str) -> Path:
    """A run folder given as a path, or by the name of a run in the data folder's ``runs``."""
    path = Path(name_or_path)
    if path.is_dir() or len(path.parts) != 1:
        return path
    named = default_run_dir(str(name_or_path))
    return named if named.is_dir() else path


@dataclass(frozen=True)
class RunSpec:
    """What ``styler train --resume runs/<name>`` needs besides the checkpoint."""

    config: TrainConfig
    style: Path
    content_dir: Path
    weights_dir: Path
    vgg_weights: Path | None = None
    # Learning-rate segments added by resuming with another --steps or --lr: each a fresh cosine
    # {"from_step", "to_step", "lr_start", "lr_end"}; the run's own first cosine is not listed.
    schedule: tuple[dict[str, Any], ...] = ()
    # A budgeted run's plan (styler.training.budget.Plan): the chosen steps, cadence and timings.
    plan: dict[str, Any] | None = None
    # The generator it started from (init_from), read once at the start: {"name", "steps" (its
    # lineage's), "head_start"}; the weights file records the lineage from it even if that file goes.
    init: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"version": FORMAT_VERSION, "config": json.loads(to_json(self.config)), "style": str(self.style),
                "content_dir": str(self.content_dir), "weights_dir": str(self.weights_dir),
                "vgg_weights": str(self.vgg_weights) if self.vgg_weights else None,
                "schedule": list(self.schedule), "plan": self.plan, "init": self.init}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "RunSpec":
        if data.get("version") != FORMAT_VERSION:
            raise ConfigError(f"run description version {data.get('version')} is not supported "
                              f"(expects {FORMAT_VERSION})")
        vgg = data.get("vgg_weights")
        return cls(config=from_dict(TrainConfig, data["config"]), style=Path(data["style"]),
                   content_dir=Path(data["content_dir"]), weights_dir=Path(data["weights_dir"]),
                   vgg_weights=Path(vgg) if vgg else None, schedule=tuple(data.get("schedule", ())),
                   plan=data.get("plan"), init=dict(data.get("init") or {}))


def _flatten(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def config_differences(saved: TrainConfig, new: TrainConfig) -> list[str]:
    """``field: saved -> new`` for every field that changes what a resumed run computes."""
    old, cur = _flatten(json.loads(to_json(saved))), _flatten(json.loads(to_json(new)))
    return [f"{key}: {old.get(key)!r} -> {cur.get(key)!r}" for key in sorted(set(old) | set(cur))
            if key not in RESUME_SAFE_FIELDS and old.get(key) != cur.get(key)]


def _atomic_write(path: Path, write: Callable[[Any], None]) -> None:
    """Write through ``write(file)`` into a temp file beside ``path``, then rename it over."""
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        write(fh)


class RunDir:
    """The files of one run; only the main process of a distributed run writes them."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    spec_path = property(lambda self: self.path / "run.json")
    checkpoint_path = property(lambda self: self.path / "checkpoint.pt")
    metrics_path = property(lambda self: self.path / "metrics.jsonl")
    previews_dir = property(lambda self: self.path / "previews")
    loss_curve_path = property(lambda self: self.path / "loss_curve.png")
    contact_sheet_path = property(lambda self: self.path / "contact_sheet.png")

    def has_checkpoint(self) -> bool:
        return self.checkpoint_path.is_file()

    def write_spec(self, spec: RunSpec) -> None:
        text = json.dumps(spec.to_dict(), indent=2, sort_keys=True).encode()
        _atomic_write(self.spec_path, lambda fh: fh.write(text))

    def read_spec(self) -> RunSpec:
        if not self.spec_path.is_file():
            raise ConfigError(f"{self.path}: not a styler run folder (no run.json); pass a run's name "
                              f"or the folder 'styler train' named when it started")
        try:
            return RunSpec.from_dict(json.loads(self.spec_path.read_text()))
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ConfigError(f"{self.spec_path}: unreadable run description ({exc})") from exc

    def save_checkpoint(self, state: dict[str, Any]) -> None:
        state = {"format": CHECKPOINT_FORMAT, "version": CHECKPOINT_VERSION, **state}
        _atomic_write(self.checkpoint_path, lambda fh: torch.save(state, fh))

    def load_checkpoint(self) -> dict[str, Any]:
        path = self.checkpoint_path
        if not path.is_file():
            raise TrainingError(f"{self.path}: no checkpoint to resume from; start the run without --resume")
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # a truncated or foreign file raises many kinds of errors
            raise TrainingError(f"{path}: unreadable checkpoint ({exc}); delete it to start over") from exc
        if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
            raise TrainingError(f"{path}: not a styler run checkpoint")
        if state.get("version") != CHECKPOINT_VERSION:
            raise TrainingError(f"{path}: checkpoint version {state.get('version')} is not supported "
                                f"(expects {CHECKPOINT_VERSION})")
        return state

    def remove_stale_temps(self) -> list[Path]:
        """What a killed run left half-written here (see :func:`styler.io.files.remove_stale_temps_in`)."""
        names = (self.spec_path, self.checkpoint_path, self.metrics_path, self.loss_curve_path,
                 self.contact_sheet_path)
        return (remove_stale_temps_in(self.path, [path.name for path in names])
                + remove_stale_temps_in(self.previews_dir, ["*.png"]))

    def reset(self) -> None:
        """Start over: drop the previous run's checkpoint, metrics and pictures."""
        for path in (self.checkpoint_path, self.metrics_path, self.loss_curve_path, self.contact_sheet_path):
            path.unlink(missing_ok=True)
        shutil.rmtree(self.previews_dir, ignore_errors=True)

    def append_metrics(self, record: dict[str, Any]) -> None:
        self.path.mkdir(parents=True, exist_ok=True)
        with self.metrics_path.open("a") as fh:
            fh.write(json.dumps(record, sort_keys=True) + "\n")

    def read_metrics(self) -> list[dict[str, Any]]:
        if not self.metrics_path.is_file():
            return []
        records = []
        for line in self.metrics_path.read_text().splitlines():
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                continue  # a line cut short by a kill; the checkpoint decides what counts
        return records

    def truncate_metrics(self, step: int) -> None:
        """Forget lines logged after ``step`` (the checkpoint a resumed run continues from)."""
        kept = [r for r in self.read_metrics() if int(r.get("step", 0)) <= step]
        text = "".join(json.dumps(r, sort_keys=True) + "\n" for r in kept).encode()
        _atomic_write(self.metrics_path, lambda fh: fh.write(text))
