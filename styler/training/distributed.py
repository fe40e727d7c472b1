"""Data-parallel training under ``torchrun``: one process per GPU (or CPU process on gloo).

torchrun sets WORLD_SIZE, RANK and LOCAL_RANK; without them everything here is a no-op, so
a plain ``styler train`` runs exactly as before.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
from torch import nn

from styler.errors import ConfigError


@dataclass(frozen=True)
class DistContext:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Only rank 0 logs, writes files and shows the progress bar."""
        return self.rank == 0


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    try:
        return int(value)
    except ValueError as exc:
        raise ConfigError(f"environment variable {name}={value!r} is not an integer") from exc


def from_env() -> DistContext:
    """The process's place in a torchrun job (a single process when not under torchrun)."""
    ctx = DistContext(rank=_env_int("RANK", 0), world_size=_env_int("WORLD_SIZE", 1),
                      local_rank=_env_int("LOCAL_RANK", 0))
    if ctx.world_size < 1 or not 0 <= ctx.rank < ctx.world_size:
        raise ConfigError(f"RANK={ctx.rank} does not fit WORLD_SIZE={ctx.world_size}")
    return ctx


def setup(ctx: DistContext, device: torch.device) -> torch.device:
    """Join the process group (NCCL on CUDA, gloo otherwise); returns this rank's device."""
    if not ctx.enabled:
        return device
    import torch.distributed as dist

    if device.type == "cuda":
        torch.cuda.set_device(ctx.local_rank)
        device = torch.device("cuda", ctx.local_rank)
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return device


def teardown() -> None:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def wrap(module: nn.Module, ctx: DistContext, device: torch.device) -> nn.Module:
    """DistributedDataParallel when distributed (gradients averaged over ranks), else as is."""
    if not ctx.enabled:
        return module
    from torch.nn.parallel import DistributedDataParallel

    ids = [device.index] if device.type == "cuda" else None
    return DistributedDataParallel(module, device_ids=ids)


def broadcast_float(value: float, ctx: DistContext, device: torch.device) -> float:
    """Rank 0's value on every rank, so decisions (early stopping) are taken together."""
    if not ctx.enabled:
        return value
    import torch.distributed as dist

    tensor = torch.tensor([value], dtype=torch.float64, device=device)
    dist.broadcast(tensor, src=0)
    return float(tensor.item())


def any_rank(flag: bool, ctx: DistContext, device: torch.device) -> bool:
    """True on every rank if it is true on any (a NaN on one rank stops them all)."""
    if not ctx.enabled:
        return flag
    import torch.distributed as dist

    tensor = torch.tensor([1.0 if flag else 0.0], device=device)
    dist.all_reduce(tensor, op=dist.ReduceOp.MAX)
    return bool(tensor.item() > 0)
