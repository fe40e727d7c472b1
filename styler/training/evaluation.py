"""Validation on the held-out photos and the preview pictures of a training run."""

from __future__ import annotations

from pathlib import Path

import torch

from styler.config import FIRST_PREVIEW_STEP
from styler.device import memory_format
from styler.io.images import save_image
from styler.training import distributed
from styler.training.previews import pairs_grid


class Evaluating:
    """The trainer's validation and previews (a mixin like :class:`styler.training.resume.Resumable`;
    every attribute used here is set by ``Trainer.__init__``)."""

    @torch.no_grad()
    def stylize(self, model: torch.nn.Module, images: torch.Tensor) -> torch.Tensor:
        was_training = model.training
        model.eval()
        outs = []
        for chunk in images.split(self.config.batch_size):
            with self._autocast():
                outs.append(model(chunk.to(self.device, memory_format=memory_format(self.device))).float().cpu())
        model.train(was_training)
        return torch.cat(outs)

    @torch.no_grad()
    def validate(self) -> float:
        """Weighted content + style + TV (+ temporal) loss on the fixed validation crops; not the
        adversarial term: it depends on a discriminator that keeps changing, so it cannot rank
        checkpoints."""
        assert self.val_images is not None
        value = 0.0
        if self.dist.is_main:
            total = 0.0
            self.generator.eval()
            with self.loss.fixed_draws(self.config.seed):  # the same projections at every evaluation
                for chunk in self.val_images.split(self.config.batch_size):
                    chunk = chunk.to(self.device, memory_format=memory_format(self.device))
                    with self._autocast():
                        total += self._validation_loss(chunk) * len(chunk)
            self.generator.train()
            value = total / len(self.val_images)
        return distributed.broadcast_float(value, self.dist, self.device)

    def _validation_loss(self, chunk: torch.Tensor) -> float:
        weight = self.config.loss.temporal_weight
        if weight == 0:
            return float(self.loss(self.generator(chunk), chunk)["total"])
        # The temporal term too, or the best checkpoint would be picked against it; the draws of
        # step 0 every time, so evaluations compare like with like.
        moved, shift = self.temporal.moved(chunk, 0)
        out, out_moved = self.generator(torch.cat([chunk, moved])).chunk(2)
        return float(self.loss(out, chunk)["total"] + weight * self.temporal(out, out_moved, shift))

    def write_preview(self) -> Path | None:
        if self.preview_images is None:
            return None
        images = self.preview_images[:8]
        path = self.run_dir.previews_dir / f"step_{self.step:06d}.png"
        save_image(pairs_grid(images, self.stylize(self.generator, images)), path)
        return path

    def _due(self, every: int) -> bool:
        """True on every ``every``-th step (never when ``every`` is 0)."""
        return every > 0 and self.step % every == 0

    def _validate_if_due(self, losses: dict[str, float]) -> float | None:
        if self.val_images is None or not (self._due(self.config.val_every) or self.step == self.config.steps):
            return None
        val = self.validate()
        self.best.update(val, self.step, self.generator, losses)
        self.stopped_early = self.best.should_stop
        return val

    def _preview_due(self) -> bool:
        """Every ``preview_every`` steps, and once early, so that a slow run soon shows it works."""
        every = self.config.preview_every
        return self._due(every) or bool(every and self.step == FIRST_PREVIEW_STEP)
