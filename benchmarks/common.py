"""Helpers shared by the benchmark scripts: machine facts, timing and the fp32 peak."""

from __future__ import annotations

import ctypes
import datetime as _dt
import os
import platform
import subprocess
import threading
import time
from pathlib import Path
from typing import Callable

import torch

from styler.device import bf16_pays, cpu_bf16_flags, native_bf16

REPO = Path(__file__).resolve().parent.parent


def cpu_model() -> str:
    """lscpu's model name (falls back to platform.processor())."""
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return platform.processor() or "unknown"
    for line in out.splitlines():
        if line.startswith("Model name:"):
            return line.split(":", 1)[1].strip()
    return "unknown"


def loadavg() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "n/a"


def git_commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True,
                              text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def machine_info(device: torch.device) -> dict[str, object]:
    info: dict[str, object] = {
        "date_utc": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M"),
        "commit": git_commit(),
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        **cpu_bf16_flags(),
        "native_bf16": native_bf16(device),
        # What precision=auto picks here (styler.device.bf16_pays).
        "auto_bf16_train": bf16_pays(device),
        "auto_bf16_apply": bf16_pays(device, inference=True),
        "loadavg": loadavg(),
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", "unset"),
    }
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    return info


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_once(fn: Callable[[], object], device: torch.device) -> float:
    """Seconds for one call, the device drained before and after."""
    sync(device)
    start = time.perf_counter()
    fn()
    sync(device)
    return time.perf_counter() - start


def peak_gflops(device: torch.device, dtype: torch.dtype = torch.float32, n: int | None = None,
                repeats: int = 3) -> float:
    """Best achieved GFLOP/s of an n x n matmul: the practical compute ceiling of this device
    (fp32 on the CPU; bf16 when asked, which is what tensor cores run)."""
    n = n or (8192 if device.type == "cuda" else 2048)
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    a @ b
    best = min(time_once(lambda: a @ b, device) for _ in range(repeats))
    return 2 * n ** 3 / best / 1e9


def peak_conv_gflops(device: torch.device, dtype: torch.dtype = torch.float32, repeats: int = 3) -> float:
    """Best achieved GFLOP/s of a VGG-like 3x3 convolution (256 channels, 64 x 64, batch 4,
    channels_last): oneDNN's or cuDNN's ceiling, which on some CPUs is far above the matmul's
    (MKL runs its AVX2 code on AMD CPUs; oneDNN its AVX-512)."""
    x = torch.randn(4, 256, 64, 64, device=device, dtype=dtype).contiguous(memory_format=torch.channels_last)
    w = torch.randn(256, 256, 3, 3, device=device, dtype=dtype).contiguous(memory_format=torch.channels_last)
    torch.nn.functional.conv2d(x, w, padding=1)
    best = min(time_once(lambda: torch.nn.functional.conv2d(x, w, padding=1), device) for _ in range(repeats))
    return 2 * 4 * 64 * 64 * 256 * 256 * 9 / best / 1e9


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    """PSNR in dB of two [0, 1] images (inf when identical)."""
    mse = (a.float().clamp(0, 1) - b.float().clamp(0, 1)).pow(2).mean().item()
    return float("inf") if mse == 0 else 10 * torch.log10(torch.tensor(1.0 / mse)).item()


class _MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in
                ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks",
                 "fordblks", "keepcost")]


def _heap_in_use() -> Callable[[], int] | None:
    """glibc's bytes in use (heap + mmapped chunks), or None off glibc."""
    try:
        libc = ctypes.CDLL(None)
        fn = libc.mallinfo2
    except (OSError, AttributeError):
        return None
    fn.restype = _MallInfo2

    def read() -> int:
        info = fn()
        return int(info.uordblks + info.hblkhd)

    return read


def peak_memory_mb(fn: Callable[[], object], device: torch.device) -> float | None:
    """Peak extra memory of one call, in MiB: CUDA's allocator statistics on a GPU; on the CPU,
    glibc's in-use bytes sampled every 0.5 ms by a thread while ``fn`` runs (the ops release the
    GIL), minus the level before the call. None where neither is available."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device)
        fn()
        torch.cuda.synchronize(device)
        return (torch.cuda.max_memory_allocated(device) - before) / 2 ** 20
    read = _heap_in_use()
    if read is None:
        return None
    before, peak, done = read(), [0], threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], read())
            time.sleep(0.0005)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    try:
        fn()
        peak[0] = max(peak[0], read())
    finally:
        done.set()
        thread.join()
    return max(0, peak[0] - before) / 2 ** 20
