"""Training speed: steps/s and where a step's time goes, with styler.train.Trainer's own pieces.

For each crop size, a :class:`styler.train.Trainer` is built (random features by default:
ImageNet weights cannot be downloaded everywhere) and

* ``steps_per_s``: its real ``train_step`` timed over ``--steps`` steps (data loading apart);
* the breakdown of an instrumented copy of the same step, with identical maths: data (the
  Trainer's DataLoader), generator forward+backward, feature network forward+backward (content
  targets, perceptual losses), discriminator (its update and the adversarial term), optimizer
  (Adam + schedule). The generator's backward is split from the losses' by computing the losses
  on a detached copy of its output and back-propagating that copy's gradient separately.

    PYTHONPATH=. python -m benchmarks.bench_train --sizes 128 256 --steps 10
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Callable, Iterator

import torch

from benchmarks.common import REPO, loadavg, machine_info, sync
from benchmarks.compare_quality import ensure_photos
from styler.config import Features, LossConfig, TrainConfig
from styler.device import autocast, memory_format
from styler.train import Trainer

PHASES = ("data", "generator", "features", "discriminator", "optimizer")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--sizes", nargs="+", type=int, default=[128, 256])
    p.add_argument("--steps", type=int, default=5, help="timed steps per size (after one warm-up)")
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--features", choices=[f.value for f in Features], default="random")
    p.add_argument("--adv-weight", type=float, default=LossConfig().adv_weight)
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


class Clock:
    """Accumulates seconds per phase, draining the device at each boundary."""

    def __init__(self, device: torch.device) -> None:
        self.device, self.seconds = device, defaultdict(float)

    def time(self, phase: str, fn: Callable[[], object]) -> object:
        sync(self.device)
        start = time.perf_counter()
        out = fn()
        sync(self.device)
        self.seconds[phase] += time.perf_counter() - start
        return out


def instrumented_step(t: Trainer, batches: Iterator, clock: Clock) -> None:
    """Trainer.train_step's maths, phase by phase (see the module docstring)."""
    dev, cfg = t.device, t.config.loss
    images, _ = clock.time("data", lambda: next(batches))
    content = images.to(dev, memory_format=memory_format(dev))

    def g_forward() -> torch.Tensor:
        with autocast(dev):
            return t.generator(content)

    fake = clock.time("generator", g_forward)
    leaf = fake.detach().requires_grad_(True)
    if cfg.adv_weight > 0:
        def d_step() -> None:
            real = t.style_crops.sample(content.shape[0], t.step).to(dev)
            with autocast(dev):
                # As Trainer.train_step: real and fake patches in one discriminator forward.
                real_logits, fake_logits = t.discriminator(torch.cat([real, leaf.detach()])).float().chunk(2)
                d_loss = t.gan.discriminator(real_logits, fake_logits)
            t.opt_d.zero_grad(set_to_none=True)
            d_loss.backward()
            t.opt_d.step()
            t.discriminator.requires_grad_(False)
            with autocast(dev):
                adv = cfg.adv_weight * t.gan.generator(t.discriminator(leaf))
            adv.backward()
            t.discriminator.requires_grad_(True)
        clock.time("discriminator", d_step)

    def perceptual() -> None:
        with autocast(dev):
            terms = t.loss(leaf, content)
        terms["total"].backward()

    clock.time("features", perceptual)
    t.opt_g.zero_grad(set_to_none=True)
    clock.time("generator", lambda: fake.backward(leaf.grad))

    def optimise() -> None:
        t.opt_g.step()
        t.sched_g.step()

    clock.time("optimizer", optimise)


def bench_size(size: int, args: argparse.Namespace, device: torch.device, weights_dir: Path) -> dict[str, object]:
    config = TrainConfig(steps=args.steps * 2 + 2, batch_size=args.batch_size, image_size=size,
                         style_size=args.style_size, features=Features(args.features),
                         num_workers=args.workers, loss=LossConfig(adv_weight=args.adv_weight))
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
    clock = Clock(device)
    for _ in range(args.steps):
        instrumented_step(trainer, batches, clock)
    step_s = sum(clock.seconds.values()) / args.steps
    row: dict[str, object] = {"size": size, "batch_size": args.batch_size, "features": args.features,
                              "adv_weight": args.adv_weight, "device": device.type,
                              "threads": torch.get_num_threads(), "loadavg": loadavg(),
                              "steps_per_s": round(1 / real_s, 3), "ms_per_step": round(real_s * 1e3, 1),
                              "instrumented_ms_per_step": round(step_s * 1e3, 1)}
    for phase in PHASES:
        row[f"{phase}_ms"] = round(clock.seconds[phase] / args.steps * 1e3, 1)
        row[f"{phase}_share"] = round(clock.seconds[phase] / args.steps / step_s, 3)
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
        print(f"{'size':>5} {'steps/s':>8} {'ms/step':>8} " + " ".join(f"{p:>14}" for p in PHASES) + "  loadavg")
        for r in rows:
            cells = " ".join(f"{r[f'{p}_ms']:>7} ({100 * r[f'{p}_share']:>3.0f}%)" for p in PHASES)
            print(f"{r['size']:>5} {r['steps_per_s']:>8} {r['ms_per_step']:>8} {cells}  {r['loadavg']}")
    return rows


if __name__ == "__main__":
    main()
