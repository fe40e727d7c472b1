"""Training a per-style generator: perceptual (VGG) losses plus a PatchGAN adversary.

A run validates on held-out photos, keeps the best generator, checkpoints into its run folder
(see :mod:`styler.training.runs`) and resumes bit-for-bit; under torchrun it trains data-parallel.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, ContextManager, Iterator, Sequence

import torch

from styler.config import HEAD_START, NO_INIT, Features, TrainConfig, to_json
from styler.device import autocast, compute_dtype, feature_memory_format, memory_format
from styler.errors import ConfigError
from styler.io.files import file_sha256
from styler.io.images import save_image
from styler.io.weights import WEIGHTS_SUFFIX, read_init_info, save_generator
from styler.nn import Generator, PatchDiscriminator
from styler.nn.generator import load_generator
from styler.nn.vgg import build_feature_extractor
from styler.nn.winograd import use_winograd, winograd_pays
from styler.training import distributed
from styler.training.data import ContentDataset, InfiniteSampler, StyleCrops, collate_content, content_images
from styler.training.distributed import DistContext
from styler.training.evaluation import Evaluating
from styler.training.facts import init_facts, weights_metadata
from styler.training.losses import PerceptualLoss, TemporalLoss, hinge_discriminator_loss, hinge_generator_loss
from styler.training.previews import loss_curve, pairs_grid
from styler.training.report import load_style, not_finite, out_of_memory, reraise, timed, worker_failure
from styler.training.resume import Resumable, deferred_interrupt
from styler.training.budget import Budgeted, Plan
from styler.training.runs import RunDir, RunSpec, default_run_dir
from styler.training.schedule import cosine_schedule
from styler.training.validation import BestTracker, first_readable, load_crops, split_validation

log = logging.getLogger(__name__)


@dataclass
class StepReport:
    """What the caller's progress display gets after every step."""

    step: int
    losses: dict[str, float]
    steps_per_s: float


@dataclass
class TrainResult:
    weights_path: Path
    steps: int
    seconds: float
    losses: dict[str, float]
    skipped_images: list[Path] = field(default_factory=list)
    best_step: int | None = None
    val_loss: float | None = None
    stopped_early: bool = False
    run_dir: Path | None = None
    # Why the run ended before its last step: "deadline" (the budget ran out) or "stop" (asked to).
    cut_short: str | None = None


class Trainer(Resumable, Budgeted, Evaluating):
    """Owns the networks, optimisers and data of one run; :meth:`run` trains and saves.

    ``resume`` continues the checkpoint in the run folder (its config must match unless
    ``force``); otherwise a fresh run starts there, refusing to replace an unfinished run unless
    ``force``, and (with ``overwrite=False``, as the CLI passes unless --overwrite) an existing
    style or a finished run. A script that names its weights folder may replace what it wrote
    before, so the library default is True; nothing ever writes into an installed package.
    """

    def __init__(self, config: TrainConfig, style_path: Path, content_dir: Path, weights_dir: Path,
                 device: torch.device, vgg_weights: Path | None = None, *, run_dir: Path | None = None,
                 resume: bool = False, force: bool = False, overwrite: bool = True,
                 dist: DistContext | None = None, started: float | None = None) -> None:
        # ``started``: when the run began (time.perf_counter()), for a budget that counts setup
        # from the command's start; default now.
        self.started = time.perf_counter() if started is None else started
        self.config, self.device, self.dist = config, device, dist or DistContext()
        self.amp_dtype = compute_dtype(config.precision, device)
        self.style_path = Path(style_path)
        self.name = config.name or self.style_path.stem
        self.weights_path = Path(weights_dir) / f"{self.name}{WEIGHTS_SUFFIX}"
        self.run_dir = RunDir(run_dir if run_dir is not None else default_run_dir(self.name))
        self.spec = RunSpec(config, self.style_path.resolve(), Path(content_dir).resolve(),
                            Path(weights_dir).resolve(), Path(vgg_weights).resolve() if vgg_weights else None)
        self._check_destination(resume, force, overwrite)
        with timed("reading the photos"):
            self._load_data(content_images(content_dir))
            log.info("%d training photos, %d held out for validation", len(self.train_paths), self.val_count)
        torch.manual_seed(config.seed)
        style = load_style(self.style_path, config.style_size)
        self._build_networks(style, vgg_weights)
        if config.init_from not in ("", NO_INIT) and not resume:
            self._init_generator(Path(weights_dir))
        self._wrap_networks()
        self.step, self.samples, self.seconds, self.checkpoint_step = 0, 0, 0.0, 0
        self.d_logs: dict[str, float] = {}
        self.finished = self.stopped_early = False
        self.best = BestTracker(config.patience)
        self.last_losses: dict[str, float] = {}
        self._at_boundary = True
        self.plan: Plan | None = None
        self.cut_short: str | None = None
        if resume:
            self._resume(force)
        else:
            if config.budget_seconds:
                self._plan_budget()
            self._start()

    # --- setup -------------------------------------------------------------------------------

    def _load_data(self, paths: list[Path]) -> None:
        cfg = self.config
        self.train_paths, val_paths = split_validation(paths, cfg.val_fraction, cfg.seed)
        first, bad = first_readable(self.train_paths)
        self.val_images, bad_val = load_crops(val_paths, cfg.image_size)
        self.val_count = 0 if self.val_images is None else len(self.val_images)
        self.skipped_paths = set(bad) | set(bad_val)
        # Previews show the validation photos; without any, a few training photos.
        self.preview_images = self.val_images
        if self.preview_images is None:
            self.preview_images = load_crops(self.train_paths[first:first + 4], cfg.image_size)[0]

    def _build_networks(self, style: torch.Tensor, vgg_weights: Path | None) -> None:
        cfg, device = self.config, self.device
        content_layer, style_layers = cfg.loss_layers
        with timed(f"loading the loss network ({cfg.features.value})"):
            extractor = build_feature_extractor(cfg.features, (content_layer, *style_layers),
                                                weights_file=vgg_weights, preprocess=cfg.vgg_preprocess,
                                                seed=cfg.seed, width_divisor=cfg.feature_width_divisor)
            if cfg.features is Features.RANDOM:
                extractor.calibrate(style)
        fmt = memory_format(device)
        self.extractor = extractor.to(device, memory_format=feature_memory_format(device))
        if device.type == "cpu" and winograd_pays():
            use_winograd(self.extractor.net)  # cuDNN picks its own algorithms on CUDA
        with timed(f"preparing the painting's statistics ({style.shape[-1]}x{style.shape[-2]} px)"):
            self.loss = PerceptualLoss(self.extractor, content_layer, style_layers, style.to(device),
                                       cfg.loss, seed=cfg.seed).to(device)
        stride = cfg.generator.stride
        # Margin: two strides, past the reflected strip and most of the edge effects of padding.
        self.temporal = TemporalLoss(stride, cfg.loss.temporal_noise, 2 * stride, cfg.seed)
        self.generator = Generator(cfg.generator).to(device, memory_format=fmt)
        self.discriminator = PatchDiscriminator(cfg.discriminator).to(device, memory_format=fmt)
        self.style_crops = StyleCrops(style, cfg.image_size, cfg.seed, self.dist.rank)
        self.style_sha256 = file_sha256(self.style_path)
        self.scaler = self._grad_scaler()

    def _grad_scaler(self) -> torch.amp.GradScaler:
        # fp16 has a narrow exponent range: scale the loss so small gradients do not underflow.
        return torch.amp.GradScaler(self.device.type, enabled=self.amp_dtype is torch.float16)

    def _init_generator(self, weights_dir: Path) -> None:
        info = read_init_info(self.config.init_from, weights_dir)
        if info.generator != self.config.generator:
            if self.config.init_from == HEAD_START:
                raise ConfigError(f"the painter's head start is a {to_json(info.generator)} generator but this run "
                                  f"asks for {to_json(self.config.generator)}; drop the generator options, or "
                                  f"train this architecture from scratch with --init-from {NO_INIT}")
            raise ConfigError(f"--init-from {info.path}: its generator is {to_json(info.generator)} but this run "
                              f"asks for {to_json(self.config.generator)}; drop the generator options to "
                              f"use the file's architecture")
        self.generator.load_state_dict(load_generator(info.path)[0].state_dict())
        self.init_info = info
        self.spec = replace(self.spec, init=init_facts(info))

    def _wrap_networks(self) -> None:
        cfg = self.config
        self.g_model = distributed.wrap(self.generator, self.dist, self.device)
        self.d_model = distributed.wrap(self.discriminator, self.dist, self.device)
        if cfg.compile:
            # Inductor's layout optimisation hands the generator's replication pad a channels_last
            # gradient, and that op's backward then disagrees with its shape kernel: the first
            # backward fails (torch 2.14). The layouts styler chose stay.
            self.g_model = torch.compile(self.g_model, options={"layout_optimization": False})
            self.loss.extractor = torch.compile(self.extractor)
        self.opt_g = torch.optim.Adam(self.generator.parameters(), lr=cfg.lr)
        # pix2pix / CycleGAN optimiser settings for the discriminator.
        self.opt_d = torch.optim.Adam(self.discriminator.parameters(), lr=cfg.d_lr, betas=(0.5, 0.999))
        self.sched_g = cosine_schedule(self.opt_g, cfg.lr, cfg.steps)

    # --- one step ----------------------------------------------------------------------------

    def _loader(self) -> torch.utils.data.DataLoader:
        cfg, workers = self.config, self.config.num_workers
        dataset = ContentDataset(self.train_paths, cfg.image_size, seed=cfg.seed)
        sampler = InfiniteSampler(len(dataset), cfg.seed, self.samples, self.dist.rank, self.dist.world_size,
                                  positions=True)
        return torch.utils.data.DataLoader(
            dataset, batch_size=cfg.batch_size, sampler=sampler, num_workers=workers,
            collate_fn=collate_content, pin_memory=self.device.type == "cuda",
            persistent_workers=workers > 0,
        )

    def _autocast(self) -> ContextManager[object]:
        return autocast(self.device, self.amp_dtype)

    def _check_finite(self, loss: torch.Tensor, which: str) -> None:
        if distributed.any_rank(not bool(torch.isfinite(loss).item()), self.dist, self.device):
            raise not_finite(which, float(loss.detach()), self.step, self.checkpoint_step, self.run_dir.path)

    def train_step(self, content: torch.Tensor) -> dict[str, float]:
        """One D-step (on every ``d_every``-th step) then one G-step (pix2pix order); returns the
        losses as floats."""
        cfg = self.config.loss
        content = content.to(self.device, non_blocking=True, memory_format=memory_format(self.device))
        use_gan, use_temporal = cfg.adv_weight > 0, cfg.temporal_weight > 0
        with self._autocast():
            if use_temporal:
                # One forward of both versions: one DDP synchronisation, as for the discriminator.
                moved, shift = self.temporal.moved(content, self.step)
                fake, fake_moved = self.g_model(torch.cat([content, moved])).chunk(2)
            else:
                fake = self.g_model(content)
        if use_gan and self.step % self.config.d_every == 0:
            self.d_logs = self._discriminator_step(fake)
        logs = dict(self.d_logs)  # the discriminator's losses at its latest update
        with self._autocast():
            terms = self.loss(fake, content)
            total = terms["total"]
            if use_gan:
                # The unwrapped discriminator: no D gradients here, so no DDP reduction to wait for.
                self.discriminator.requires_grad_(False)
                terms["adv"] = hinge_generator_loss(self.discriminator(fake))
                self.discriminator.requires_grad_(True)
                total = total + cfg.adv_weight * terms["adv"]
            if use_temporal:
                terms["temporal"] = self.temporal(fake, fake_moved, shift)
                total = total + cfg.temporal_weight * terms["temporal"]
        self._check_finite(total, "generator")
        self.opt_g.zero_grad(set_to_none=True)
        self.scaler.scale(total).backward()
        self.scaler.step(self.opt_g)
        self.scaler.update()
        self.sched_g.step()
        logs.update({k: float(v.detach()) for k, v in terms.items() if k != "total"})
        # What validation measures (no adversarial term), so the loss curve compares like with like.
        logs["perceptual"] = float(terms["total"].detach())
        logs["total"] = float(total.detach())
        return logs

    def _discriminator_step(self, fake: torch.Tensor) -> dict[str, float]:
        """One hinge-loss update of the discriminator on style crops against ``fake``."""
        real = self.style_crops.sample(fake.shape[0], self.step).to(self.device)
        with self._autocast():
            # One forward of real and fake together: one DDP synchronisation per step.
            real_logits, fake_logits = self.d_model(torch.cat([real, fake.detach()])).float().chunk(2)
            d_loss = hinge_discriminator_loss(real_logits, fake_logits)
        self._check_finite(d_loss, "discriminator")
        self.opt_d.zero_grad(set_to_none=True)
        self.scaler.scale(d_loss).backward()
        self.scaler.step(self.opt_d)
        return {"d": float(d_loss.detach()), "d_real": float(real_logits.detach().mean()),
                "d_fake": float(fake_logits.detach().mean())}

    def _log(self, losses: dict[str, float], rate: float, val: float | None) -> None:
        record: dict[str, Any] = {"step": self.step, **losses, "lr": self.opt_g.param_groups[0]["lr"],
                                  "steps_per_s": round(rate, 4), "seconds": round(self.seconds, 3)}
        if val is not None:
            record.update(val_loss=val, best_val_loss=self.best.loss, best_step=self.best.step)
        self.run_dir.append_metrics(record)

    def _after_step(self, losses: dict[str, float], rate: float) -> None:
        cfg = self.config
        val = self._validate_if_due(losses)
        if not self.dist.is_main:
            return
        last = self.step == cfg.steps
        if self._due(cfg.log_every) or val is not None or last or self.stopped_early:
            self._log(losses, rate, val)
        if self._preview_due():
            self.write_preview()
        if self._due(cfg.checkpoint_every) and not last and not self.stopped_early:
            self.save_checkpoint()

    # --- the loop ------------------------------------------------------------------------------

    def _next_batch(self, loader: Iterator[Any], interrupted: Callable[[], bool]) -> torch.Tensor:
        try:
            images, failed = next(loader)
        except Exception as exc:
            if interrupted():  # Ctrl-C also stopped the DataLoader workers
                raise KeyboardInterrupt from None
            reraise(exc, worker_failure(exc))
        self.skipped_paths.update(self.train_paths[i] for i in failed)
        return images

    def _step(self, images: torch.Tensor) -> None:
        """One step and its counters; a checkpoint is only ever written between two of these."""
        self._at_boundary = False
        try:
            self.last_losses = self.train_step(images)
        except RuntimeError as exc:  # torch.OutOfMemoryError is one
            reraise(exc, out_of_memory(exc, self.config, self.step, self.device, self.checkpoint_step))
        self.step += 1
        self.samples += self.config.batch_size * self.dist.world_size
        self._at_boundary = True

    def run(self, on_step: Callable[[StepReport], None] | None = None,
            stop: threading.Event | None = None) -> TrainResult:
        """Train to the last step (or the deadline of a budget), then save the best generator.
        ``stop``: when set (from another thread), the run ends after the current step and saves
        the best generator so far, like a normal finish."""
        deadline = self._deadline()
        self.generator.train()
        self.discriminator.train()
        with deferred_interrupt() as interrupted:
            try:
                self._steps(on_step, stop, deadline, interrupted)
            except KeyboardInterrupt:
                if self._at_boundary and self.step > 0:
                    self.save_checkpoint()
                raise
        if self.cut_short and self.val_images is not None and self.best.step != self.step:
            self.best.update(self.validate(), self.step, self.generator, self.last_losses)
        return self._finish()

    def _steps(self, on_step: Callable[[StepReport], None] | None, stop: threading.Event | None,
               deadline: float | None, interrupted: Callable[[], bool]) -> None:
        """Step until the last step, an early stop, ``stop`` or the deadline (``cut_short`` says which)."""
        first_step, started = self.step, time.perf_counter()
        clock = started - self.seconds
        loader: Iterator[Any] | None = None
        while self.step < self.config.steps and not self.stopped_early:
            self.cut_short = self._cut_short(stop, deadline)
            if self.cut_short:
                break
            if loader is None:
                loader = iter(self._loader())
            self._step(self._next_batch(loader, interrupted))
            now = time.perf_counter()
            self.seconds = now - clock
            rate = (self.step - first_step) / max(now - started, 1e-9)
            self._after_step(self.last_losses, rate)
            if on_step is not None:
                on_step(StepReport(self.step, self.last_losses, rate))
            if interrupted():
                raise KeyboardInterrupt

    def _finish(self) -> TrainResult:
        self.finished = True
        if self.best.state is not None:
            final = Generator(self.config.generator)
            final.load_state_dict(self.best.state)
        else:
            final = self.generator
        if self.dist.is_main:
            self.save_checkpoint()
            final = final.to(self.device).eval()
            save_generator(self.weights_path, final, weights_metadata(self))
            save_image(loss_curve(self.run_dir.read_metrics()), self.run_dir.loss_curve_path)
            if self.preview_images is not None:
                images = self.preview_images[:16]
                save_image(pairs_grid(images, self.stylize(final, images), pairs_per_row=4),
                           self.run_dir.contact_sheet_path)
        return TrainResult(self.weights_path, self.step, self.seconds, self.last_losses,
                           sorted(self.skipped_paths), self.best.step if self.best.state is not None else None,
                           self.best.loss, self.stopped_early, self.run_dir.path, self.cut_short)


__all__: Sequence[str] = ["StepReport", "TrainResult", "Trainer"]
