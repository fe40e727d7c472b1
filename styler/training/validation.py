"""The held-out validation photos and the bookkeeping of the best generator."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import torch

from styler.errors import DataError, ImageError
from styler.io.images import center_crop, load_rgb, pil_to_tensor

MIN_VAL, MAX_VAL = 4, 64


def split_validation(paths: Sequence[Path], fraction: float, seed: int) -> tuple[list[Path], list[Path]]:
    """A fixed, seeded (train, validation) split.

    The validation set is ``fraction`` of the photos, at least 4 and at most 64, but never
    more than half of them, so a small folder still trains on most of its photos; a single
    photo (or ``fraction`` 0) gives no validation set.
    """
    n = len(paths)
    if fraction <= 0 or n < 2:
        return list(paths), []
    k = min(max(MIN_VAL, round(fraction * n)), MAX_VAL, n // 2)
    chosen = set(torch.randperm(n, generator=torch.Generator().manual_seed(seed + 1)).tolist()[:k])
    return [p for i, p in enumerate(paths) if i not in chosen], [p for i, p in enumerate(paths) if i in chosen]


def load_crops(paths: Sequence[Path], size: int) -> tuple[torch.Tensor | None, list[Path]]:
    """Centre crops of the readable ``paths`` as one (N, 3, size, size) batch, and the unreadable."""
    crops, bad = [], []
    for path in paths:
        try:
            crops.append(center_crop(pil_to_tensor(load_rgb(path)), size))
        except ImageError:
            bad.append(path)
    return (torch.stack(crops) if crops else None), bad


def first_readable(paths: Sequence[Path]) -> tuple[int, list[Path]]:
    """Index of the first photo that decodes, and those before it that did not.

    Checked before training so a folder of only unreadable files is one clear error rather
    than an exception from inside a DataLoader worker.
    """
    bad: list[Path] = []
    reason = ""
    for i, path in enumerate(paths):
        try:
            load_rgb(path)
            return i, bad
        except ImageError as exc:
            bad.append(path)
            reason = str(exc)
    raise DataError(f"none of the {len(paths)} content images could be read (last: {reason})")


@dataclass
class BestTracker:
    """Best validation loss so far, its step and generator weights; patience counting."""

    patience: int = 0
    loss: float | None = None
    step: int = 0
    evals_since: int = 0
    state: dict[str, torch.Tensor] | None = field(default=None, repr=False)
    losses: dict[str, float] = field(default_factory=dict)  # the training losses of that step

    def update(self, loss: float, step: int, model: torch.nn.Module, losses: dict[str, float] | None = None) -> bool:
        """Record one evaluation; True if it is the best so far."""
        if self.loss is None or loss < self.loss:
            self.loss, self.step, self.evals_since = loss, step, 0
            self.losses = dict(losses or {})
            self.state = {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}
            return True
        self.evals_since += 1
        return False

    @property
    def should_stop(self) -> bool:
        return self.patience > 0 and self.evals_since >= self.patience

    def state_dict(self) -> dict[str, object]:
        return {"loss": self.loss, "step": self.step, "evals_since": self.evals_since, "generator": self.state,
                "losses": self.losses}

    def load_state_dict(self, state: dict[str, object]) -> None:
        self.loss = state["loss"]  # type: ignore[assignment]
        self.step = int(state["step"])  # type: ignore[arg-type]
        self.evals_since = int(state["evals_since"])  # type: ignore[arg-type]
        self.state = state["generator"]  # type: ignore[assignment]
        self.losses = dict(state.get("losses") or {})  # type: ignore[call-overload]
