"""Device selection and the CUDA fast paths (bf16 autocast, channels_last)."""

from __future__ import annotations

import contextlib
from typing import ContextManager

import torch

from styler.config import DeviceChoice
from styler.errors import DeviceError


def resolve_device(choice: DeviceChoice | str = DeviceChoice.AUTO) -> torch.device:
    """``auto`` picks CUDA, then Apple MPS, then the CPU; an explicit choice must exist."""
    choice = DeviceChoice(choice)
    has_mps = bool(getattr(torch.backends, "mps", None)) and torch.backends.mps.is_available()
    if choice is DeviceChoice.AUTO:
        if torch.cuda.is_available():
            return torch.device("cuda")
        return torch.device("mps") if has_mps else torch.device("cpu")
    if choice is DeviceChoice.CUDA and not torch.cuda.is_available():
        raise DeviceError("--device cuda: no CUDA GPU is visible to PyTorch (use --device cpu or auto)")
    if choice is DeviceChoice.MPS and not has_mps:
        raise DeviceError("--device mps: Apple MPS is not available here (use --device cpu or auto)")
    return torch.device(choice.value)


def autocast(device: torch.device, dtype: torch.dtype | None = None) -> ContextManager[object]:
    """bf16 autocast on CUDA (no loss scaling needed, unlike fp16); full precision elsewhere."""
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=dtype or torch.bfloat16)
    if dtype is not None and dtype != torch.float32:
        return torch.autocast(device.type, dtype=dtype)
    return contextlib.nullcontext()


def memory_format(device: torch.device) -> torch.memory_format:
    """channels_last lets cuDNN use tensor-core NHWC kernels; on the CPU it rarely helps."""
    return torch.channels_last if device.type == "cuda" else torch.contiguous_format
