"""Device selection, the arithmetic a precision means on a device, and channels_last."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import ContextManager

import torch

from styler.config import DeviceChoice, Precision
from styler.errors import ConfigError, DeviceError


def resolve_device(choice: DeviceChoice | str = DeviceChoice.AUTO) -> torch.device:
    """``auto`` picks CUDA, then Apple MPS, then the CPU; an explicit choice must exist."""
    choice = DeviceChoice(choice)
    has_mps = bool(getattr(torch.backends, "mps", None)) and torch.backends.mps.is_available()
    if choice is DeviceChoice.AUTO:
        if torch.cuda.is_available():
            return torch.device("cuda")
        return torch.device("mps") if has_mps else torch.device("cpu")
    if choice is DeviceChoice.CUDA and not torch.cuda.is_available():
        raise DeviceError("device=cuda: no CUDA GPU is visible to PyTorch; use device=cpu or device=auto")
    if choice is DeviceChoice.MPS and not has_mps:
        raise DeviceError("device=mps: Apple MPS is not available here; use device=cpu or device=auto")
    return torch.device(choice.value)


_DTYPES = {Precision.FP32: torch.float32, Precision.BF16: torch.bfloat16, Precision.FP16: torch.float16}
# x86 instructions that compute bf16 in hardware; without them oneDNN emulates bf16, and bf16
# autocast runs 10-50x slower than fp32 (docs/performance.md, "Precision").
CPU_BF16_FLAGS = ("avx512_bf16", "amx_bf16")


def _cpuinfo_text(cpuinfo: Path) -> str:
    """``cpuinfo``'s text; empty where there is none (not Linux)."""
    try:
        return cpuinfo.read_text()
    except OSError:
        return ""


def _cpuinfo_flags(cpuinfo: Path) -> set[str]:
    text = _cpuinfo_text(cpuinfo)
    return {flag for line in text.splitlines() if line.startswith("flags") for flag in line.split(":", 1)[1].split()}


def cpu_family(cpuinfo: Path = Path("/proc/cpuinfo")) -> tuple[str, int] | None:
    """The CPU's vendor and family number (``AuthenticAMD``, 26) from ``cpuinfo`` (Linux, x86);
    None where there is no such file or it does not say."""
    text = _cpuinfo_text(cpuinfo)
    fields = dict(line.split(":", 1) for line in text.splitlines() if ":" in line)
    fields = {key.strip(): value.strip() for key, value in fields.items()}
    if "vendor_id" not in fields or not fields.get("cpu family", "").isdigit():
        return None
    return fields["vendor_id"], int(fields["cpu family"])


def cpu_bf16_flags(cpuinfo: Path = Path("/proc/cpuinfo")) -> dict[str, bool]:
    """Which of :data:`CPU_BF16_FLAGS` this CPU has: ``cpuinfo``'s flags where there is one (Linux),
    else torch's own CPU probes."""
    flags = _cpuinfo_flags(cpuinfo)
    if flags:
        return {name: name in flags for name in CPU_BF16_FLAGS}
    probes = {"avx512_bf16": "_is_avx512_bf16_supported", "amx_bf16": "_is_amx_tile_supported"}
    return {name: bool(getattr(torch.cpu, probe, lambda: False)()) for name, probe in probes.items()}


def native_bf16(device: torch.device) -> bool:
    """Whether ``device`` computes bf16 in hardware: a CUDA GPU that does not only emulate it
    (Ampere and later), or a CPU with AVX512-BF16 or AMX. Only there can bf16 autocast be faster
    (:func:`bf16_pays`)."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported(including_emulation=False)
    return device.type == "cpu" and any(cpu_bf16_flags().values())


def bf16_pays(device: torch.device, inference: bool = False) -> bool:
    """Whether bf16 autocast runs faster than fp32 on ``device``. Training: wherever bf16 is native
    (:func:`native_bf16`), since the loss network's wide convolutions dominate its step. Inference
    on the CPU: only with AMX. The generator's narrow (16-32 channel) convolutions ran at 0.73-0.81x
    fp32's speed with AVX512-BF16 alone (docs/performance.md, "bf16 on a CPU that computes it")."""
    if not native_bf16(device):
        return False
    return device.type != "cpu" or not inference or cpu_bf16_flags()["amx_bf16"]


def compute_dtype(precision: Precision | str, device: torch.device, inference: bool = False) -> torch.dtype:
    """The autocast dtype for ``precision`` on ``device`` (``inference``: for ``apply`` rather than
    for training). AUTO is bf16 where that is faster (:func:`bf16_pays`; no loss scaling needed,
    unlike fp16) and fp32 elsewhere; fp16 is refused off CUDA, where half-precision kernels are
    slow or missing."""
    precision = Precision(precision)
    if precision is Precision.AUTO:
        return torch.bfloat16 if bf16_pays(device, inference) else torch.float32
    if precision is Precision.FP16 and device.type != "cuda":
        raise ConfigError(f"precision=fp16 needs a CUDA GPU (half-precision kernels on {device.type} are slow "
                          f"or missing); use precision=bf16 or precision=fp32")
    return _DTYPES[precision]


def autocast(device: torch.device, dtype: torch.dtype) -> ContextManager[object]:
    """Autocast to ``dtype`` on ``device``; nothing for fp32."""
    if dtype == torch.float32:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=dtype)


def full_precision(device: torch.device) -> ContextManager[object]:
    """Autocast off: statistics (Gram matrices, sorted projections) stay fp32 in a bf16 step."""
    return torch.autocast(device.type, enabled=False)


def memory_format(device: torch.device) -> torch.memory_format:
    """channels_last lets cuDNN use tensor-core NHWC kernels; on the CPU it rarely helps."""
    return torch.channels_last if device.type == "cuda" else torch.contiguous_format


def feature_memory_format(device: torch.device) -> torch.memory_format:
    """The loss network's layout: channels_last on CUDA and on the CPU too, where oneDNN runs VGG's
    wide 3x3 convolutions faster in NHWC than from contiguous tensors (docs/performance.md,
    "Training speed"); the generator and the discriminator keep :func:`memory_format`."""
    return torch.channels_last if device.type in ("cuda", "cpu") else torch.contiguous_format
