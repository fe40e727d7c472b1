"""Stylization speed: styler's generator against Johnson's TransformerNet, same run, same threads.

For each size: best and median ms per image (and images/s) of styler's generator through its
inference fast path (:class:`styler.nn.fast.FastGenerator`), of the plain
:class:`Generator`, and of the TransformerNet baseline, timed interleaved (styler, plain,
baseline, styler, ...) so CPU contention hits all alike; GFLOP per image
(torch.utils.flop_counter, counted on the meta device); peak extra memory of one forward; the
achieved GFLOP/s next to the device's peak, the best of large matmuls run before and after.
``--precision both`` adds the fast path under bf16 autocast (its speed against fp32's and its PSNR
against the fp32 output); the header names the CPU's bf16 instructions (AVX512-BF16, AMX) and
what ``--precision auto`` picks on it for apply and for training (styler.device.bf16_pays).
styler's two networks run on the photo extended by its border (styler.nn.generator.Border), as
``styler apply`` does; TransformerNet on the photo alone.

``--curve``: what ``styler apply`` costs as photos grow, the whole-image pass against the
streamed stripes of styler.inference.tiling (exact statistics): milliseconds per megapixel and
peak memory for each size, every measurement in a fresh process (see :func:`run_curve`).

    PYTHONPATH=. python -m benchmarks.bench_apply                      # 256 512 1024 2048
    PYTHONPATH=. python -m benchmarks.bench_apply --sizes 256 --precision both
    PYTHONPATH=. python -m benchmarks.bench_apply --sizes 1024 3840x2160 --json
    PYTHONPATH=. python -m benchmarks.bench_apply --precision bf16 --channels-last --device cuda
    PYTHONPATH=. python -m benchmarks.bench_apply --curve              # 512 .. 4096, 8000x6000
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from typing import Callable

import torch
from torch.utils.flop_counter import FlopCounterMode

from benchmarks.common import REPO, loadavg, machine_info, peak_gflops, peak_memory_mb, psnr, time_once
from benchmarks.transformer_net import TransformerNet
from styler.config import ApplyConfig, GeneratorConfig
from styler.nn.fast import FastGenerator
from styler.nn.generator import BORDER, Border, Generator, extend_border

DEFAULT_SIZES = ("256", "512", "1024", "2048")
CURVE_SIZES = ("512", "1024", "2048", "4096", "8000x6000")


def parse_size(text: str) -> tuple[int, int]:
    """``1024`` -> (1024, 1024); ``3840x2160`` -> (height 2160, width 3840)."""
    try:
        if "x" in text.lower():
            w, h = (int(v) for v in text.lower().split("x"))
        else:
            w = h = int(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"bad size {text!r}: use 1024 or 3840x2160") from exc
    if w < 8 or h < 8:
        raise argparse.ArgumentTypeError(f"size {text!r} is too small (>= 8)")
    return h, w


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--sizes", nargs="+", type=parse_size, default=None, help="N or WxH (default 256..2048)")
    p.add_argument("--large", action="store_true", help="also 4096x4096")
    p.add_argument("--repeats", type=int, default=3, help="timed calls per network and size")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    p.add_argument("--precision", choices=["fp32", "bf16", "both"], default="fp32",
                   help="bf16 = autocast; both: every network in fp32 and styler's fast path in bf16 too")
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    p.add_argument("--channels-last", action="store_true", help="NHWC tensors and weights")
    p.add_argument("--compile", action="store_true", help="torch.compile the styler generator")
    p.add_argument("--cuda-graphs", action="store_true", help="replay styler as a CUDA graph (GPU only)")
    p.add_argument("--no-plain", action="store_true", help="skip the plain (un-fused) styler generator")
    p.add_argument("--no-baseline", action="store_true", help="skip TransformerNet (speedup is then null)")
    p.add_argument("--base-channels", type=int, default=GeneratorConfig().base_channels,
                   help="styler generator width (the bundled styles' default; wider costs about its square)")
    p.add_argument("--downsamples", type=int, choices=range(1, 5), default=GeneratorConfig().num_downsamples,
                   help="halvings before the residual blocks (3: blocks at 1/8; 2: at 1/4, same FLOPs, more memory traffic)")
    p.add_argument("--json", action="store_true", help="one JSON object per size on stdout")
    add_curve_arguments(p)
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    default_sizes = CURVE_SIZES if args.curve else DEFAULT_SIZES
    args.sizes = args.sizes or [parse_size(s) for s in default_sizes]
    if args.large:
        args.sizes.append((4096, 4096))
    if args.repeats < 1:
        p.error("--repeats must be >= 1")
    return args


def count_gflop(model: torch.nn.Module, shape: tuple[int, ...]) -> float:
    """FLOPs of one forward, counted on the meta device (no compute, no memory)."""
    meta = copy.deepcopy(model).to("meta")
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        meta(torch.empty(shape, device="meta"))
    return counter.get_total_flops() / 1e9


def cuda_graph(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor) -> Callable[[torch.Tensor], torch.Tensor]:
    """Capture ``fn`` on a static input once; each call copies the input in and replays."""
    static_in = x.clone()
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        for _ in range(3):  # warm up cuDNN's algorithm choice outside the capture
            fn(static_in)
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        static_out = fn(static_in)

    def replay(inp: torch.Tensor) -> torch.Tensor:
        static_in.copy_(inp)
        graph.replay()
        return static_out

    return replay


def runner(model: torch.nn.Module, args: argparse.Namespace, device: torch.device,
           fast_options: bool, bf16: bool) -> Callable[[torch.Tensor], torch.Tensor]:
    """The inference call for one network: inference mode, autocast for ``bf16``; compile and CUDA
    graphs only on the styler fast path (``fast_options``)."""
    fmt = torch.channels_last if args.channels_last else torch.contiguous_format
    model = model.to(device, memory_format=fmt).eval()
    if fast_options and args.compile:
        model = torch.compile(model)
    dtype = torch.bfloat16 if bf16 else None

    def call(x: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode(), torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
            return model(x.contiguous(memory_format=fmt))

    return call


def measure(name: str, fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, device: torch.device,
            times: dict[str, list[float]]) -> None:
    times.setdefault(name, []).append(time_once(lambda: fn(x), device) * 1e3)


def interleaved(nets: dict[str, Callable], x: torch.Tensor, repeats: int, device: torch.device) -> dict[str, list[float]]:
    """ms of each call, the networks in turn (styler, plain, baseline, styler, ...)."""
    times: dict[str, list[float]] = {}
    for _ in range(repeats):
        for name, fn in nets.items():
            measure(name, fn, x, device, times)
    return times


def bench_size(hw: tuple[int, int], nets: dict[str, Callable], models: dict[str, torch.nn.Module],
               args: argparse.Namespace, device: torch.device) -> dict[str, object]:
    h, w = hw
    x = torch.rand(1, 3, h, w, device=device)
    if args.cuda_graphs and device.type == "cuda":
        nets = {name: cuda_graph(fn, x) if name.startswith("styler") else fn for name, fn in nets.items()}
    outputs = {name: fn(x).float() for name, fn in nets.items()}  # warm-up, and outputs for checks
    times = interleaved(nets, x, args.repeats, device)
    row: dict[str, object] = {"size": w if w == h else f"{w}x{h}", "height": h, "width": w,
                              "loadavg": loadavg(), "threads": torch.get_num_threads(),
                              "precision": args.precision, "device": device.type}
    for name in nets:
        best = min(times[name])
        gflop = count_gflop(models[name], (1, 3, h, w))
        row[f"{name}_ms"] = round(best, 2)
        row[f"{name}_median_ms"] = round(statistics.median(times[name]), 2)
        row[f"{name}_images_per_s"] = round(1e3 / best, 3)
        row[f"{name}_gflop"] = round(gflop, 3)
        row[f"{name}_gflops_achieved"] = round(gflop / best * 1e3, 1)
        mem = peak_memory_mb(lambda: nets[name](x), device)
        row[f"{name}_peak_mb"] = None if mem is None else round(mem, 1)
    row["speedup"] = round(row["baseline_ms"] / row["styler_ms"], 2) if "baseline" in nets else None
    with torch.inference_mode():
        reference = models["reference"].to(device)(x).float()
    row.update(fidelity(outputs, reference, row))
    return row


def fidelity(outputs: dict[str, torch.Tensor], reference: torch.Tensor, row: dict[str, object]) -> dict[str, float]:
    """The fast path's outputs (in bf16, compiled, as graphs) against the plain fp32 generator's,
    and bf16's speed against fp32's where both ran."""
    found: dict[str, float] = {}
    for name in (n for n in outputs if n.startswith("styler")):
        found[f"{name}_psnr_vs_fp32_db"] = round(psnr(outputs[name], reference), 1)
        found[f"{name}_max_abs_diff_vs_fp32"] = float((outputs[name].clamp(0, 1) - reference.clamp(0, 1)).abs().max())
    if "styler_bf16" in outputs:
        found["bf16_speedup"] = round(row["styler_ms"] / row["styler_bf16_ms"], 2)
    return found


class Bordered(torch.nn.Module):
    """The plain generator on the photo extended by its border, as the fast path runs it: the
    same work and, within float rounding, the same outputs."""

    def __init__(self, generator: Generator) -> None:
        super().__init__()
        self.generator = generator

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        stride = self.generator.config.stride
        return Border(*x.shape[-2:], stride).crop(self.generator(extend_border(x, stride, BORDER)))


def build(args: argparse.Namespace, device: torch.device) -> tuple[dict[str, Callable], dict[str, torch.nn.Module]]:
    torch.manual_seed(0)
    plain = Generator(GeneratorConfig(base_channels=args.base_channels, num_downsamples=args.downsamples)).eval()
    models: dict[str, torch.nn.Module] = {"styler": FastGenerator.from_generator(plain)}
    if not args.no_plain:
        models["plain"] = Bordered(plain)
    if not args.no_baseline:
        models["baseline"] = TransformerNet().eval()
    if args.precision == "both":
        models["styler_bf16"] = models["styler"]
    nets = {name: runner(copy.deepcopy(m), args, device, fast_options=name.startswith("styler"),
                         bf16=args.precision == "bf16" or name == "styler_bf16") for name, m in models.items()}
    models["reference"] = Bordered(copy.deepcopy(plain))
    return nets, models


def print_table(rows: list[dict[str, object]], info: dict[str, object]) -> None:
    print(f"# {info['cpu']} ({info['cores']} cores, {info['threads']} threads), torch {info['torch']}, "
          f"commit {info['commit']}, {info['date_utc']} UTC, peak {rows[0]['peak_gflops']} GFLOP/s "
          f"(best 2048^2 fp32 matmul before/after); avx512_bf16 {info['avx512_bf16']}, amx_bf16 "
          f"{info['amx_bf16']}: native bf16 {info['native_bf16']}; auto picks bf16 for apply "
          f"{info['auto_bf16_apply']}, for training {info['auto_bf16_train']}")
    names = [n for n in ("styler", "styler_bf16", "plain", "baseline") if f"{n}_ms" in rows[0]]
    head = f"{'size':>10} " + " ".join(f"{n + ' ms':>12} {'GFLOP':>7} {'%peak':>6} {'MB':>7}" for n in names)
    print(head + f" {'speedup':>8}  loadavg")
    for row in rows:
        cells = " ".join(f"{row[f'{n}_ms']:>12} {row[f'{n}_gflop']:>7.1f} "
                         f"{100 * row[f'{n}_fraction_of_peak']:>5.0f}% {row[f'{n}_peak_mb'] or 0:>7.0f}"
                         for n in names)
        print(f"{row['size']!s:>10} {cells} {row['speedup'] or '-'!s:>8}  {row['loadavg']}")
    if "styler_bf16_ms" in rows[0]:
        for row in rows:
            print(f"{row['size']!s:>10} bf16: {row['bf16_speedup']}x the fp32 fast path's speed, "
                  f"PSNR {row['styler_bf16_psnr_vs_fp32_db']} dB vs fp32")


def _curve(args: argparse.Namespace) -> list[dict[str, object]] | None:
    """The --curve rows (or one child's measurement); None when the run is not a curve."""
    if args.curve_child:
        return [curve_child(args)]
    return run_curve(args) if args.curve else None


def main(argv: list[str] | None = None) -> list[dict[str, object]]:
    args = parse_args(argv)
    curve = _curve(args)
    if curve is not None:
        return curve
    auto = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(auto if args.device == "auto" else args.device)
    peak_dtype = torch.bfloat16 if device.type == "cuda" and args.precision == "bf16" else torch.float32
    peak = peak_gflops(device, peak_dtype)
    nets, models = build(args, device)
    info = machine_info(device)
    rows = [bench_size(hw, nets, models, args, device) for hw in args.sizes]
    # The peak is measured before and after: on a shared CPU one measurement can fall in a busy
    # moment, and the best one is the closer estimate of the limit. Fractions use the best.
    peak = max(peak, peak_gflops(device, peak_dtype))
    for row in rows:
        row["peak_gflops"] = round(peak, 1)
        for name in nets:
            row[f"{name}_fraction_of_peak"] = round(row[f"{name}_gflops_achieved"] / peak, 3)
        if args.json:
            print(json.dumps({**row, **{k: v for k, v in info.items() if k not in row}}), flush=True)
    if not args.json:
        print_table(rows, info)
    return rows


# --- The time-per-megapixel curve and peak memory (--curve) ----------------------------------


def add_curve_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--curve", action="store_true",
                   help="ms per megapixel and peak memory of the whole-image pass and of stripes, per size "
                        "(default sizes 512 .. 4096 and 8000x6000), each in a fresh process")
    p.add_argument("--tile", type=int, default=512,
                   help="--curve: stripes of about TILE x TILE pixels (styler apply --tile)")
    p.add_argument("--whole-max", type=int, default=4096 * 4096,
                   help="--curve: largest image (pixels) also run whole; an 8000x6000 whole pass needs several GiB")
    p.add_argument("--curve-child", nargs=2, metavar=("MODE", "WxH"), help=argparse.SUPPRESS)


def curve_child(args: argparse.Namespace) -> dict[str, object]:
    """One measurement in this (fresh) process: ``styler apply``'s network on one random photo,
    whole or in stripes; the best of ``--repeats`` calls after a first one; the peak resident set
    (``ru_maxrss``: Python, torch, the model, the input and the output included) and the peak heap
    above what was in use before the timed call (the input was; the output is not)."""
    from styler.inference.stylizer import Stylizer

    mode, (h, w) = args.curve_child[0], parse_size(args.curve_child[1])
    torch.manual_seed(0)
    generator = Generator(GeneratorConfig(base_channels=args.base_channels, num_downsamples=args.downsamples))
    config = ApplyConfig(tile=args.tile if mode == "stripes" else None, max_tile_pixels=0)
    stylizer = Stylizer(generator.eval(), device="cpu", config=config)
    x = torch.rand(1, 3, h, w)
    stylizer.stylize_tensor(x)  # first call: allocator and kernels warm
    seconds = []
    for _ in range(max(1, args.repeats - 1)):
        start = time.perf_counter()
        stylizer.stylize_tensor(x)
        seconds.append(time.perf_counter() - start)
    heap = peak_memory_mb(lambda: stylizer.stylize_tensor(x), torch.device("cpu"))
    row = {"mode": mode, "width": w, "height": h, "megapixels": round(h * w / 1e6, 3),
           "ms_per_megapixel": round(min(seconds) * 1e3 / (h * w / 1e6), 1), "seconds": round(min(seconds), 3),
           "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
           "heap_peak_mib": None if heap is None else round(heap), "image_mib": round(x.numel() * 4 / 2**20),
           "threads": torch.get_num_threads(), "loadavg": loadavg()}
    print(json.dumps(row), flush=True)
    return row


def _child(args: argparse.Namespace, mode: str, hw: tuple[int, int]) -> dict[str, object]:
    h, w = hw
    command = [sys.executable, "-m", "benchmarks.bench_apply", "--curve-child", mode, f"{w}x{h}",
               "--tile", str(args.tile), "--repeats", str(args.repeats), "--downsamples", str(args.downsamples),
               "--base-channels", str(args.base_channels), *(["--threads", str(args.threads)] if args.threads else [])]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def run_curve(args: argparse.Namespace) -> list[dict[str, object]]:
    """Every size in stripes, and whole up to ``--whole-max`` pixels; a 64x64 run first gives
    the resident baseline (Python, torch, the model). One table (or JSON rows) for the run."""
    info = machine_info(torch.device("cpu"))
    baseline = _child(args, "whole", (64, 64))
    rows = []
    for hw in args.sizes:
        row: dict[str, object] = {"size": f"{hw[1]}x{hw[0]}", "megapixels": round(hw[0] * hw[1] / 1e6, 3),
                                  "baseline_rss_mib": baseline["peak_rss_mib"]}
        for mode in ("whole", "stripes"):
            if mode == "whole" and hw[0] * hw[1] > args.whole_max:
                continue
            result = _child(args, mode, hw)
            for key in ("ms_per_megapixel", "seconds", "peak_rss_mib", "heap_peak_mib", "loadavg"):
                row[f"{mode}_{key}"] = result[key]
            row["image_mib"] = result["image_mib"]
        rows.append(row)
        if args.json:
            print(json.dumps({**row, **info}), flush=True)
    if not args.json:
        print_curve(rows, info, args)
    return rows


def print_curve(rows: list[dict[str, object]], info: dict[str, object], args: argparse.Namespace) -> None:
    print(f"# {info['cpu']} ({info['cores']} cores, {info['threads']} threads), torch {info['torch']}, commit "
          f"{info['commit']}, {info['date_utc']} UTC; stripes of about {args.tile}x{args.tile} px; "
          f"resident baseline {rows[0]['baseline_rss_mib']} MiB (python, torch, the model)")
    print(f"{'size':>10} {'MP':>6} {'whole ms/MP':>12} {'stripes ms/MP':>14} {'ratio':>6} "
          f"{'whole RSS':>10} {'stripes RSS':>12} {'heap':>7} {'image':>6}  loadavg")
    for row in rows:
        whole, stripes = row.get("whole_ms_per_megapixel"), row["stripes_ms_per_megapixel"]
        ratio = f"{stripes / whole:.2f}" if whole else "-"
        print(f"{row['size']:>10} {row['megapixels']:>6} {whole or '-':>12} {stripes:>14} {ratio:>6} "
              f"{row.get('whole_peak_rss_mib') or '-':>10} {row['stripes_peak_rss_mib']:>12} "
              f"{row['stripes_heap_peak_mib'] or '-':>7} {row['image_mib']:>6}  {row['stripes_loadavg']}")


if __name__ == "__main__":
    main()
