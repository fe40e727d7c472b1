"""Training a per-style generator: perceptual (VGG) losses plus a PatchGAN adversary."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import torch

from styler.checkpoint import WEIGHTS_SUFFIX, file_sha256, save_generator, utc_now
from styler.config import DEFAULT_LAYERS, Features, TrainConfig, to_json
from styler.device import autocast, memory_format
from styler.errors import DataError, TrainingError
from styler.features import build_feature_extractor
from styler.images import ContentDataset, InfiniteSampler, collate_content, find_images, load_style_image
from styler.losses import HingeGANLoss, PerceptualLoss
from styler.models import Generator, PatchDiscriminator


@dataclass
class StepReport:
    """What the caller's progress display gets after every step."""

    step: int
    total: int
    losses: dict[str, float]
    steps_per_s: float
    skipped_images: int


@dataclass
class TrainResult:
    weights_path: Path
    steps: int
    seconds: float
    losses: dict[str, float]
    skipped_images: list[Path] = field(default_factory=list)


def content_images(content_dir: Path) -> list[Path]:
    paths = find_images(Path(content_dir))
    if not paths:
        raise DataError(f"{content_dir}: no images found (looked for jpg, jpeg, png, webp, bmp, tif "
                        f"in all subfolders)")
    return paths


class StyleCrops:
    """Random crops of the style image: the 'real' samples the discriminator sees."""

    def __init__(self, style: torch.Tensor, size: int, seed: int) -> None:
        short = min(style.shape[-2:])
        if short < size:
            scale = size / short
            new = [max(size, math.ceil(s * scale)) for s in style.shape[-2:]]
            style = torch.nn.functional.interpolate(style, size=new, mode="bilinear", align_corners=False)
        self.style, self.size = style, size
        self.rng = torch.Generator().manual_seed(seed)

    def sample(self, n: int) -> torch.Tensor:
        h, w = self.style.shape[-2:]
        ys = torch.randint(0, h - self.size + 1, (n,), generator=self.rng).tolist()
        xs = torch.randint(0, w - self.size + 1, (n,), generator=self.rng).tolist()
        return torch.cat([self.style[..., y:y + self.size, x:x + self.size] for y, x in zip(ys, xs)])


class Trainer:
    """Owns the networks, optimisers and data of one run; :meth:`run` trains and saves."""

    def __init__(self, config: TrainConfig, style_path: Path, content_dir: Path, weights_dir: Path,
                 device: torch.device, vgg_weights: Path | None = None) -> None:
        self.config, self.device = config, device
        self.style_path = Path(style_path)
        self.name = config.name or self.style_path.stem
        self.weights_path = Path(weights_dir) / f"{self.name}{WEIGHTS_SUFFIX}"
        self.paths = content_images(content_dir)
        torch.manual_seed(config.seed)
        style = load_style_image(self.style_path, config.style_size)
        content_layer, style_layers = DEFAULT_LAYERS[config.features]
        extractor = build_feature_extractor(config.features, (content_layer, *style_layers),
                                            weights_file=vgg_weights, seed=config.seed,
                                            width_divisor=config.feature_width_divisor)
        if config.features is Features.RANDOM:
            extractor.calibrate(style)
        fmt = memory_format(device)
        self.extractor = extractor.to(device, memory_format=fmt)
        self.loss = PerceptualLoss(self.extractor, content_layer, style_layers, style.to(device),
                                   config.loss, seed=config.seed).to(device)
        self.generator = Generator(config.generator).to(device, memory_format=fmt)
        self.discriminator = PatchDiscriminator(config.discriminator).to(device, memory_format=fmt)
        self.gan = HingeGANLoss()
        self.opt_g = torch.optim.Adam(self.generator.parameters(), lr=config.lr)
        # pix2pix / CycleGAN optimiser settings for the discriminator.
        self.opt_d = torch.optim.Adam(self.discriminator.parameters(), lr=config.d_lr, betas=(0.5, 0.999))
        # Cosine decay to 10%: large early steps find the style fast, small late steps remove
        # the residual noise without a schedule that needs tuning per run length.
        self.sched_g = torch.optim.lr_scheduler.CosineAnnealingLR(self.opt_g, config.steps, config.lr * 0.1)
        self.style_crops = StyleCrops(style, config.image_size, config.seed)
        self.style_sha256 = file_sha256(self.style_path)
        self.step = 0

    def _loader(self) -> torch.utils.data.DataLoader:
        dataset = ContentDataset(self.paths, self.config.image_size)
        workers = self.config.num_workers
        return torch.utils.data.DataLoader(
            dataset, batch_size=self.config.batch_size,
            sampler=InfiniteSampler(len(dataset), self.config.seed, self.step * self.config.batch_size),
            num_workers=workers, collate_fn=collate_content, pin_memory=self.device.type == "cuda",
            persistent_workers=workers > 0, generator=torch.Generator().manual_seed(self.config.seed),
        )

    def train_step(self, content: torch.Tensor) -> dict[str, float]:
        """One D-step then one G-step (pix2pix order); returns the losses as floats."""
        cfg = self.config.loss
        content = content.to(self.device, non_blocking=True, memory_format=memory_format(self.device))
        use_gan = cfg.adv_weight > 0
        with autocast(self.device):
            fake = self.generator(content)
        logs: dict[str, float] = {}
        if use_gan:
            real = self.style_crops.sample(content.shape[0]).to(self.device)
            with autocast(self.device):
                d_loss = self.gan.discriminator(self.discriminator(real), self.discriminator(fake.detach()))
            self.opt_d.zero_grad(set_to_none=True)
            d_loss.backward()
            self.opt_d.step()
            logs["d"] = float(d_loss.detach())
        with autocast(self.device):
            terms = self.loss(fake, content)
            total = terms["total"]
            if use_gan:
                self.discriminator.requires_grad_(False)
                terms["adv"] = self.gan.generator(self.discriminator(fake))
                self.discriminator.requires_grad_(True)
                total = total + cfg.adv_weight * terms["adv"]
        if not torch.isfinite(total):
            raise TrainingError(f"loss became {float(total)} at step {self.step + 1}; lower --lr or "
                                f"the loss weights")
        self.opt_g.zero_grad(set_to_none=True)
        total.backward()
        self.opt_g.step()
        self.sched_g.step()
        logs.update({k: float(v.detach()) for k, v in terms.items() if k != "total"})
        logs["total"] = float(total.detach())
        return logs

    def metadata(self, losses: dict[str, float], seconds: float) -> dict[str, object]:
        cfg = self.config
        meta: dict[str, object] = {
            "style_name": self.name,
            "style_file": self.style_path.name,
            "style_sha256": self.style_sha256,
            "features": cfg.features.value,
            "steps": self.step,
            "image_size": cfg.image_size,
            "batch_size": cfg.batch_size,
            "content_images": len(self.paths),
            "loss_weights": to_json(cfg.loss),
            "train_config": to_json(cfg),
            "final_losses": {k: round(v, 6) for k, v in losses.items()},
            "device": self.device.type,
            "train_seconds": round(seconds, 1),
            "created_utc": utc_now(),
        }
        if cfg.features is Features.RANDOM:
            meta["features_note"] = ("trained with random (not ImageNet) VGG features; "
                                     "expect weaker stylization")
        return meta

    def run(self, on_step: Callable[[StepReport], None] | None = None) -> TrainResult:
        self.generator.train()
        self.discriminator.train()
        start, skipped = time.perf_counter(), set()
        losses: dict[str, float] = {}
        loader = iter(self._loader())
        while self.step < self.config.steps:
            images, failed = next(loader)
            skipped.update(failed)
            losses = self.train_step(images)
            self.step += 1
            if on_step is not None:
                elapsed = time.perf_counter() - start
                on_step(StepReport(self.step, self.config.steps, losses, self.step / max(elapsed, 1e-9),
                                   len(skipped)))
        seconds = time.perf_counter() - start
        self.generator.eval()
        save_generator(self.weights_path, self.generator, self.metadata(losses, seconds))
        return TrainResult(self.weights_path, self.step, seconds, losses,
                           [self.paths[i] for i in sorted(skipped)])


def train(config: TrainConfig, style_path: Path, content_dir: Path, weights_dir: Path,
          device: torch.device, vgg_weights: Path | None = None,
          on_step: Callable[[StepReport], None] | None = None) -> TrainResult:
    """Train one style and write ``<weights_dir>/<name>.safetensors``."""
    return Trainer(config, style_path, content_dir, weights_dir, device, vgg_weights).run(on_step)


__all__: Sequence[str] = ["StepReport", "TrainResult", "Trainer", "train"]
