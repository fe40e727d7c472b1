"""The page's Train form, checked, turned into a job; and a job into the Trainer ``styler train`` uses.

Uploaded paintings and photos are written only once the whole form is accepted, under names the
server makes, into ``<run folder>/inputs/<random>/``; a folder named on the form must exist and is
only read.
"""

from __future__ import annotations

import math
import secrets
from dataclasses import replace
from pathlib import Path
from typing import Any, Mapping

import torch

from styler.config import Features, TrainConfig, UiConfig, defaults_for
from styler.errors import ConfigError, DataError
from styler.io.files import check_writable
from styler.training.budget import budgeted
from styler.training.runs import default_run_dir
from styler.ui.jobs import JobSpec
from styler.ui.styles import check_free, check_name
from styler.ui.uploads import Upload, UploadStore


def job_config(name: str, features: Features, length: tuple[int, float], device: torch.device,
               preview_every: int, overrides: Mapping[str, Any] | None = None) -> TrainConfig:
    """``styler train``'s defaults for the loss network, for ``length`` = (steps, 0) or (0, budget
    in seconds), with previews and validations often enough for the page to show progress and
    for Stop to find a validated generator."""
    base, (steps, budget) = defaults_for(features), length
    if budget:
        # styler train --budget's recipe for this machine; the trainer plans the steps.
        base = budgeted(base, budget, device)
    else:
        every = max(1, steps // 10)
        base = replace(base, steps=steps, val_every=min(base.val_every, every),
                       preview_every=min(base.preview_every, every))
    # No DataLoader worker processes: forking a server's threads can deadlock the child.
    config = replace(base, name=name, num_workers=0, preview_every=min(base.preview_every, preview_every))
    return replace(config, **overrides) if overrides else config


def _number(value: Any) -> bool:
    try:
        return math.isfinite(float(value))
    except (TypeError, ValueError):
        return False


class TrainSetup:
    """Checks the form against the weights folder, the uploads and the jobs already queued."""

    def __init__(self, weights_dir: Path, device: torch.device, uploads: UploadStore, config: UiConfig,
                 runs_root: Path | None = None, overrides: Mapping[str, Any] | None = None) -> None:
        self.weights_dir, self.device, self.uploads = Path(weights_dir), device, uploads
        self.config, self.runs_root, self.overrides = config, runs_root, dict(overrides or {})

    def _length(self, form: Mapping[str, Any]) -> tuple[int, float]:
        """(steps, 0) or (0, budget seconds): the form gives one of them."""
        steps, budget = form.get("steps"), form.get("budget")
        if (steps in (None, "")) == (budget in (None, "")):
            raise ConfigError("give a time budget or a number of steps (one of them)")
        if budget not in (None, ""):
            most = self.config.max_budget
            if isinstance(budget, bool) or not _number(budget) or not 0 < float(budget) <= most:
                raise ConfigError(f"budget must be a number of seconds up to {most}, got {str(budget)[:40]!r}")
            return 0, float(budget)
        most = self.config.max_steps
        if isinstance(steps, bool) or not str(steps).strip().isdigit() or not 1 <= int(steps) <= most:
            raise ConfigError(f"steps must be a whole number from 1 to {most}, got {str(steps)[:40]!r}")
        return int(steps), 0.0

    def _upload(self, upload_id: Any, what: str) -> Upload:
        upload = self.uploads.get(upload_id) if isinstance(upload_id, str) else None
        if upload is None:
            raise ConfigError(f"no {what} uploaded (or it was forgotten to free memory); add it again")
        return upload

    @staticmethod
    def _folder(value: Any) -> Path | None:
        if value is None or (isinstance(value, str) and not value.strip()):
            return None
        folder = Path(str(value).strip()).expanduser()
        if not folder.is_dir():
            raise DataError(f"no such folder on this machine: {str(value)[:200]}")
        return folder

    def _photos(self, form: Mapping[str, Any]) -> tuple[list[Upload], Path | None]:
        ids = form.get("photos") or []
        if not isinstance(ids, list):
            raise ConfigError("photos must be a list of upload ids")
        photos, folder = [self._upload(i, "photo") for i in ids], self._folder(form.get("folder"))
        if bool(photos) == (folder is not None):
            raise ConfigError("give the photos to train on: upload some, or name a folder of them (not both)")
        return photos, folder

    def accept(self, form: Mapping[str, Any], busy: set[str]) -> JobSpec:
        """A job for the form, its uploads written; nothing is written when the form is refused."""
        name = check_name(form.get("name"))
        if name in busy:
            raise ConfigError(f"a job training {name!r} is already waiting or running")
        check_free(name, self.weights_dir)
        try:
            features = Features(form.get("features") or TrainConfig.features.value)
        except ValueError as exc:
            raise ConfigError(f"features must be one of {', '.join(f.value for f in Features)}") from exc
        config = job_config(name, features, self._length(form), self.device, self.config.preview_every,
                            self.overrides)
        painting = self._upload(form.get("painting"), "painting")
        photos, folder = self._photos(form)
        run_dir = self.runs_root / name if self.runs_root else default_run_dir(name)
        check_writable(run_dir, "run folder")
        inputs = run_dir / "inputs" / secrets.token_hex(4)
        style = painting.write_to(inputs, "painting")
        for index, photo in enumerate(photos):
            photo.write_to(inputs / "photos", f"{index:04d}")
        return JobSpec(config, style, folder or inputs / "photos", run_dir)

    def build(self, spec: JobSpec) -> Any:
        """The job's Trainer, when its turn comes (a style of its name may have appeared since)."""
        from styler.training.trainer import Trainer

        check_free(spec.name, self.weights_dir)
        # overwrite: the run folder of an earlier run of this name (its style deleted) starts over.
        return Trainer(spec.config, spec.style, spec.content_dir, self.weights_dir, self.device,
                       run_dir=spec.run_dir, overwrite=True)
