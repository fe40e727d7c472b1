"""Does ``--init-from`` save steps? Train style B from scratch and from style A's generator.

Everything is synthetic and tiny (random VGG features, 32 px crops, CPU), so it runs in a
couple of minutes anywhere. It trains style A, then style B twice under the same budget, and
prints how many steps each B run needs to reach a validation loss, read from metrics.jsonl:

    python benchmarks/transfer_learning.py
    python benchmarks/transfer_learning.py --steps 60 --base-steps 80 --target 20
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from styler.config import Features, TrainConfig
from styler.training.trainer import Trainer


def photo(path: Path, seed: int, size: int = 64) -> None:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size] / size
    image = np.stack([xx, yy, 0.5 + 0.5 * np.sin(8 * xx + seed)], -1) + rng.normal(0, 0.05, (size, size, 3))
    Image.fromarray((np.clip(image, 0, 1) * 255).astype(np.uint8)).save(path)


def painting(path: Path, period: float, colour: tuple[int, int, int], size: int = 96) -> None:
    """Diagonal brush-like stripes: two such paintings differ in period and palette only."""
    yy, xx = np.mgrid[0:size, 0:size]
    wave = (np.sin((xx + yy) / period) * 0.5 + 0.5)[..., None]
    image = wave * np.array(colour) + (1 - wave) * np.array([30, 30, 60])
    Image.fromarray(image.astype(np.uint8)).save(path)


def steps_to_reach(metrics: Path, target: float) -> int | None:
    for line in metrics.read_text().splitlines():
        record = json.loads(line)
        if "val_loss" in record and record["val_loss"] <= target:
            return int(record["step"])
    return None


def train(config: TrainConfig, root: Path, style: Path) -> tuple[Path, float]:
    trainer = Trainer(config, style, root / "photos", root / "weights", torch.device("cpu"),
                      run_dir=root / "runs" / config.name, force=True)
    started = time.perf_counter()
    trainer.run()
    return trainer.run_dir.metrics_path, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base-steps", type=int, default=80, help="steps for style A")
    parser.add_argument("--steps", type=int, default=60, help="budget for each style B run")
    parser.add_argument("--target", type=float, default=None,
                        help="validation loss to reach [default: the from-scratch run's final value]")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "photos").mkdir()
        for i in range(40):
            photo(root / "photos" / f"{i:02d}.png", seed=i)
        painting(root / "a.png", period=3.0, colour=(230, 180, 40))
        painting(root / "b.png", period=4.0, colour=(200, 90, 40))
        base = TrainConfig(name="a", steps=args.base_steps, batch_size=4, image_size=32, style_size=96,
                           features=Features.RANDOM, num_workers=0, val_fraction=0.1, val_every=5,
                           log_every=5, preview_every=0, checkpoint_every=10_000)
        _, seconds_a = train(base, root, root / "a.png")
        b = replace(base, steps=args.steps)
        scratch, seconds_scratch = train(replace(b, name="b_scratch"), root, root / "b.png")
        transfer, seconds_transfer = train(replace(b, name="b_transfer", init_from="a"), root, root / "b.png")
        finals = {name: [json.loads(x) for x in path.read_text().splitlines() if "val_loss" in x][-1]["val_loss"]
                  for name, path in (("scratch", scratch), ("init-from", transfer))}
        target = args.target if args.target is not None else finals["scratch"]
        print(f"style A: {args.base_steps} steps in {seconds_a:.0f}s; style B budget: {args.steps} steps "
              f"(32 px, batch 4, random features, CPU, {args.threads} thread(s))")
        print(f"target validation loss: {target:.4f}")
        print(f"{'run':<10} {'steps to target':>16} {'final val loss':>15} {'seconds':>8}")
        for name, path, seconds in (("scratch", scratch, seconds_scratch), ("init-from", transfer, seconds_transfer)):
            reached = steps_to_reach(path, target)
            print(f"{name:<10} {reached if reached is not None else 'not reached':>16} {finals[name]:>15.4f} "
                  f"{seconds:>8.1f}")


if __name__ == "__main__":
    main()
