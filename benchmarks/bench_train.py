"""Training speed: steps/s and where a step's time goes, timing styler.training.trainer.Trainer's own step.

For each crop size, a :class:`styler.training.trainer.Trainer` is built (random features by default:
ImageNet weights cannot be downloaded everywhere) and its real ``train_step`` is timed over
``--steps`` steps (data loading apart), then over ``--steps`` more with forward hooks on its
networks that split the step into: data (the Trainer's DataLoader), the generator's forward,
the feature network's forwards (content targets and perceptual losses), the discriminator's
forwards (its update and the adversarial term), and the rest: every backward pass and the
optimizers. The hooks only read the clock (draining the device first), so the maths timed is
exactly what ``styler train`` runs.

    OMP_WAIT_POLICY=PASSIVE PYTHONPATH=. python -m benchmarks.bench_train --sizes 128 256 --steps 10
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import torch
from torch import nn

from benchmarks.common import REPO, loadavg, machine_info, sync
from benchmarks.compare_quality import ensure_photos
from styler.config import Features, LossConfig, TrainConfig
from styler.training.trainer import Trainer

PHASES = ("data", "generator", "features", "discriminator", "backward_optimizer")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--sizes", nargs="+", type=int, default=[128, 256])
    p.add_argument("--steps", type=int, default=5, help="timed steps per size (after one warm-up)")
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--features", choices=[f.value for f in Features], default="random")
    p.add_argument("--adv-weight", type=float, default=LossConfig().adv_weight)
    p.add_argument("--temporal-weight", type=float, default=LossConfig().temporal_weight,
                   help="> 0: time the steps with the temporal loss (a second generator pass)")
    p.add_argument("--content-dir", type=Path, default=REPO / "runs" / "photos")
    p.add_argument("--style", type=Path, default=REPO / "samples" / "styles" / "starry_night.jpg")
    p.add_argument("--style-size", type=int, default=256)
    p.add_argument("--workers", type=int, default=0, help="DataLoader processes")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    p.add_argument("--json", action="store_true", help="one JSON object per size on stdout")
    args = p.parse_args(argv)
    if args.steps < 1:
        p.error("--steps must be >= 1")
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
    """Seconds per phase over ``steps`` calls of the Trainer's own ``train_step``."""
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
            t.train_step(images)
            sync(t.device)
            total["step"] += time.perf_counter() - start
    finally:
        clock.remove()
    phases = {"data": total["data"], "generator": clock.seconds["generator"],
              "features": clock.seconds["features"],
              "discriminator": clock.seconds["discriminator"] + clock.seconds["discriminator_g"]}
    phases["backward_optimizer"] = total["step"] - sum(v for k, v in phases.items() if k != "data")
    return phases


def bench_size(size: int, args: argparse.Namespace, device: torch.device, weights_dir: Path) -> dict[str, object]:
    config = TrainConfig(steps=args.steps * 2 + 2, batch_size=args.batch_size, image_size=size,
                         style_size=args.style_size, features=Features(args.features),
                         num_workers=args.workers,
                         loss=LossConfig(adv_weight=args.adv_weight, temporal_weight=args.temporal_weight))
    trainer = Trainer(config, args.style, args.content_dir, weights_dir, device)
    trainer.generator.train()
    trainer.discriminator.train()
    batches = iter(trainer._loader())
    trainer.train_step(next(batches)[0])  # warm-up: allocator, oneDNN / cuDNN choices
    data = [next(batches)[0] for _ in range(args.steps)]
    sync(device)
    start = time.perf_counter()
    for images in data:
        trainer.train_step(images)
    sync(device)
    real_s = (time.perf_counter() - start) / args.steps
    seconds = timed_steps(trainer, batches, args.steps)
    step_s = sum(seconds.values()) / args.steps
    row: dict[str, object] = {"size": size, "batch_size": args.batch_size, "features": args.features,
                              "adv_weight": args.adv_weight, "device": device.type,
                              "threads": torch.get_num_threads(), "loadavg": loadavg(),
                              "steps_per_s": round(1 / real_s, 3), "ms_per_step": round(real_s * 1e3, 1),
                              "instrumented_ms_per_step": round(step_s * 1e3, 1)}
    for phase in PHASES:
        row[f"{phase}_ms"] = round(seconds[phase] / args.steps * 1e3, 1)
        row[f"{phase}_share"] = round(seconds[phase] / args.steps / step_s, 3)
    return row


def main(argv: list[str] | None = None) -> list[dict[str, object]]:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device)
    ensure_photos(args.content_dir)
    info = machine_info(device)
    rows = []
    with tempfile.TemporaryDirectory() as weights_dir:
        for size in args.sizes:
            row = bench_size(size, args, device, Path(weights_dir))
            rows.append(row)
            if args.json:
                print(json.dumps({**row, **{k: v for k, v in info.items() if k not in row}}), flush=True)
    if not args.json:
        print(f"# {info['cpu']} ({info['cores']} cores, {info['threads']} threads), torch {info['torch']}, "
              f"commit {info['commit']}, {info['date_utc']} UTC, features {args.features}, batch {args.batch_size}")
        print(f"{'size':>5} {'steps/s':>8} {'ms/step':>8} " + " ".join(f"{p:>18}" for p in PHASES) + "  loadavg")
        for r in rows:
            cells = " ".join(f"{r[f'{p}_ms']:>11} ({100 * r[f'{p}_share']:>3.0f}%)" for p in PHASES)
            print(f"{r['size']:>5} {r['steps_per_s']:>8} {r['ms_per_step']:>8} {cells}  {r['loadavg']}")
    return rows


if __name__ == "__main__":
    main()
