"""The generator's learning-rate schedule: one cosine from ``lr`` at step 0 to ``lr * LR_FLOOR`` at
the last step, written as a function of the absolute step.

Large early steps find the style fast, small late steps remove the residual noise, with nothing
to tune per run length. Because the rate is a function of (step, total steps), a run extended to
more steps (``--resume --steps N``) continues the cosine it would have followed had it been
planned for N steps from the start: the rate goes back up to that schedule's value at the current
step instead of staying at the floor the finished run had reached.
"""

from __future__ import annotations

import math

import torch

from styler.config import LR_FLOOR


def cosine_factor(step: int, total: int) -> float:
    """The fraction of the peak rate at ``step`` of ``total``: 1 at step 0, ``LR_FLOOR`` at the end."""
    done = min(max(step, 0), total) / max(total, 1)
    return LR_FLOOR + (1.0 - LR_FLOOR) * (1.0 + math.cos(math.pi * done)) / 2.0


def cosine_schedule(optimizer: torch.optim.Optimizer, lr: float, total: int,
                    step: int = 0) -> torch.optim.lr_scheduler.LambdaLR:
    """A scheduler at ``step`` of a ``total``-step cosine peaking at ``lr``; the optimizer's rate is
    set to that step's value at once."""
    for group in optimizer.param_groups:
        group["initial_lr"] = lr
    # last_epoch=step - 1: the scheduler's own first step() (in its constructor) lands on ``step``.
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: cosine_factor(s, total), last_epoch=step - 1)
