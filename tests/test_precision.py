"""Which arithmetic ``auto`` picks: bf16 only where the hardware computes it natively."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from styler import device as dev
from styler.config import ApplyConfig, Precision
from styler.device import compute_dtype, cpu_bf16_flags, native_bf16
from styler.inference.stylizer import Stylizer

ROOT = Path(__file__).resolve().parent.parent
CPU = torch.device("cpu")


NONE = {"avx512_bf16": False, "amx_bf16": False}
AVX512 = {"avx512_bf16": True, "amx_bf16": False}
AMX = {"avx512_bf16": False, "amx_bf16": True}
BF16, FP32 = torch.bfloat16, torch.float32


@pytest.mark.parametrize("flags,train,apply", [(NONE, FP32, FP32), (AVX512, BF16, FP32), (AMX, BF16, BF16)])
def test_auto_is_bf16_only_where_the_cpu_runs_it_faster(monkeypatch, flags, train, apply):
    """Training gains from bf16 wherever the CPU computes it; apply's narrow generator only with
    AMX (with AVX512-BF16 alone it ran at 0.73-0.81x fp32's speed)."""
    monkeypatch.setattr(dev, "cpu_bf16_flags", lambda: flags)
    assert compute_dtype(Precision.AUTO, CPU) == train
    assert compute_dtype(Precision.AUTO, CPU, inference=True) == apply
    for inference in (False, True):
        assert compute_dtype(Precision.FP32, CPU, inference=inference) == FP32
        assert compute_dtype(Precision.BF16, CPU, inference=inference) == BF16


@pytest.mark.parametrize("flags,dtype", [(NONE, FP32), (AVX512, FP32), (AMX, BF16)])
def test_the_stylizer_asks_for_the_precision_of_inference(monkeypatch, flags, dtype):
    monkeypatch.setattr(dev, "cpu_bf16_flags", lambda: flags)
    stylizer = Stylizer.load("starry", weights_dir=ROOT / "weights", device="cpu")
    assert stylizer.dtype == dtype
    assert repr(stylizer).count(str(dtype).removeprefix("torch.")) == 1


def test_cpu_flags_come_from_cpuinfo(tmp_path):
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nflags\t\t: fpu sse avx2 avx512f amx_bf16 amx_tile\n")
    assert cpu_bf16_flags(info) == {"avx512_bf16": False, "amx_bf16": True}
    info.write_text("processor\t: 0\nflags\t\t: fpu sse avx2 fma\n")
    assert cpu_bf16_flags(info) == {"avx512_bf16": False, "amx_bf16": False}


@pytest.mark.parametrize("native", [True, False])
def test_auto_on_cuda_asks_for_native_bf16_not_emulation(monkeypatch, native):
    asked = []

    def supported(including_emulation: bool = True) -> bool:
        asked.append(including_emulation)
        return native or including_emulation

    monkeypatch.setattr(torch.cuda, "is_bf16_supported", supported)
    cuda = torch.device("cuda")
    assert native_bf16(cuda) is native and asked == [False]
    for inference in (False, True):
        assert compute_dtype(Precision.AUTO, cuda, inference=inference) == (BF16 if native else FP32)


@pytest.mark.parametrize("name", ["starry", "shipwreck", "matisse"])
def test_bundled_styles_in_bf16_stay_within_40_db_of_fp32(name):
    """What ``auto`` may pick on a CPU with native bf16 must look the same: PSNR >= 40 dB."""
    torch.manual_seed(0)
    photo = torch.nn.functional.interpolate(torch.rand(1, 3, 12, 16), size=(96, 128), mode="bicubic").clamp(0, 1)
    out = {}
    for precision in (Precision.FP32, Precision.BF16):
        stylizer = Stylizer.load(name, weights_dir=ROOT / "weights", config=ApplyConfig(precision=precision),
                                 device="cpu")
        out[precision] = stylizer.stylize_tensor(photo).float().clamp(0, 1)
    mse = (out[Precision.FP32] - out[Precision.BF16]).pow(2).mean()
    assert 10 * torch.log10(1 / mse) >= 40
