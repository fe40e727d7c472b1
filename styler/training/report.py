"""What training tells its user beyond the step counter: each setup step with its time (logging,
shown by ``-v`` and the CLI's status line) and one line instead of a traceback for failures that
surface deep inside torch (out of memory, errors in DataLoader workers, a too-large painting)."""

from __future__ import annotations

import contextlib
import logging
import time
from pathlib import Path
from typing import Iterator, NoReturn

import torch

from styler.config import TrainConfig
from styler.errors import ImageError, StylerError, TrainingError
from styler.io.images import load_style_image

log = logging.getLogger(__name__)


@contextlib.contextmanager
def timed(step: str) -> Iterator[None]:
    """Log a setup step as it starts (debug: what the CLI's status line shows) and with its time
    when done (info: what -v prints)."""
    log.debug("%s...", step)
    start = time.perf_counter()
    yield
    log.info("%s: %.1fs", step, time.perf_counter() - start)


def load_style(path: Path, size: int) -> torch.Tensor:
    """The style painting; one too large for Pillow's limit names the option that raises it."""
    try:
        return load_style_image(path, size)
    except ImageError as exc:
        if "too large" not in str(exc):
            raise
        raise ImageError(f"{exc}; raise the limit with --max-pixels if you trust this file") from exc


def worker_failure(exc: Exception) -> Exception:
    """DataLoader re-raises a worker's exception with the worker's whole traceback as its message:
    keep the last line (the error itself) as one line. Errors not from a worker stay as they are."""
    text = str(exc).strip()
    if "DataLoader worker" not in text:
        return exc
    last = text.splitlines()[-1]
    name, _, message = last.partition(": ")
    if isinstance(exc, StylerError) and message and " " not in name:
        return type(exc)(message)
    return TrainingError(f"a data-loading worker failed: {last}")


def out_of_memory(exc: Exception, config: TrainConfig, step: int, device: torch.device,
                  checkpoint_step: int) -> Exception:
    """Out of memory (CUDA's own error, or the CPU allocator's RuntimeError) as one line that
    names the options to lower; any other error unchanged."""
    if not isinstance(exc, torch.OutOfMemoryError) and "can't allocate memory" not in str(exc):
        return exc
    saved = f"; the last checkpoint is at step {checkpoint_step}" if checkpoint_step else ""
    return TrainingError(f"out of memory at step {step + 1} on {device.type} with --batch-size "
                         f"{config.batch_size} and --image-size {config.image_size}; lower one of them{saved}")


def not_finite(which: str, value: float, step: int, checkpoint_step: int, run_dir: Path) -> TrainingError:
    """A loss that became NaN or infinite, and how to go on from the last good checkpoint."""
    kept = (f"the last good checkpoint (step {checkpoint_step}) is in {run_dir}; "
            f"resume it with --resume --force and a lower --lr or loss weights"
            if checkpoint_step else "no checkpoint was written yet; lower --lr or the loss weights")
    return TrainingError(f"the {which} loss became {value} at step {step + 1}; stopped: {kept}")


def reraise(original: Exception, replacement: Exception) -> NoReturn:
    """Raise ``replacement`` chained to ``original`` (or ``original`` itself when unchanged)."""
    if replacement is original:
        raise original
    raise replacement from original
