"""What a trained generator's weights file says about its run: the style, the loss network and
the weights it came from (ImageNet file and hash, or random features, said plainly), the
configuration, the kept step and losses, and where it started from."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

import torch

from styler.config import Features, TrainConfig, to_json
from styler.io.weights import WeightsInfo, utc_now
from styler.nn.vgg import FeatureExtractor
from styler.training.distributed import DistContext
from styler.training.runs import RunSpec
from styler.training.validation import BestTracker


class RunState(Protocol):
    """What a run's facts are read from (a :class:`styler.training.trainer.Trainer`, which
    imports this module: named by its attributes, not imported back)."""

    config: TrainConfig
    name: str
    style_path: Path
    style_sha256: str
    extractor: FeatureExtractor
    best: BestTracker
    last_losses: dict[str, float]
    step: int
    seconds: float
    stopped_early: bool
    dist: DistContext
    device: torch.device
    train_paths: list[Path]
    val_count: int
    spec: RunSpec


def weights_metadata(trainer: RunState) -> dict[str, object]:
    """The metadata :func:`styler.io.weights.save_generator` writes for ``trainer``'s run."""
    cfg = trainer.config
    kept = trainer.best.state is not None  # else the last generator is the one saved
    losses = trainer.best.losses if kept and trainer.best.losses else trainer.last_losses
    meta: dict[str, object] = {
        "style_name": trainer.name,
        "style_file": trainer.style_path.name,
        "style_sha256": trainer.style_sha256,
        "features": cfg.features.value,
        "features_source": trainer.extractor.source.describe(),
        "vgg_weights": trainer.extractor.source.to_dict(),
        # The file holds the best validated generator, not necessarily the last one.
        "steps": trainer.step,
        "steps_trained": trainer.step,
        "best_step": trainer.best.step if kept else trainer.step,
        "image_size": cfg.image_size,
        "batch_size": cfg.batch_size,
        "world_size": trainer.dist.world_size,
        "content_images": len(trainer.train_paths),
        "validation_images": trainer.val_count,
        "loss_weights": to_json(cfg.loss),
        "train_config": to_json(cfg),
        "final_losses": {k: round(v, 6) for k, v in losses.items()},
        "device": trainer.device.type,
        "train_seconds": round(trainer.seconds, 1),
        "created_utc": utc_now(),
    }
    if trainer.best.state is not None:
        meta.update(val_loss=trainer.best.loss, stopped_early=trainer.stopped_early)
    meta.update(lineage_metadata(trainer.spec.init, cfg.init_from, trainer.step))
    if cfg.features is Features.RANDOM:
        meta["features_note"] = ("trained with random (not ImageNet) VGG features; "
                                 "expect weaker stylization")
    elif trainer.extractor.source.note:
        meta["features_note"] = trainer.extractor.source.note
    return meta


def init_facts(info: WeightsInfo) -> dict[str, object]:
    """What a run keeps about the generator it starts from, read when it starts (the file may be
    gone, or replaced, by the time the run ends)."""
    return {"name": info.name, "steps": info.lineage_steps, "head_start": info.head_start}


def lineage_metadata(init: dict[str, Any], init_from: str, steps: int) -> dict[str, object]:
    """``init_from`` and ``lineage_steps``: this run's steps plus those of the styles it started
    from. The head start's pre-training is not counted: it is where every new style starts."""
    if not init:  # from scratch, or a run folder from before runs kept what they started from
        return {"init_from": init_from} if init_from else {}
    meta: dict[str, object] = {"init_from": init_from or init["name"], "lineage_steps": init["steps"] + steps}
    if init["head_start"]:
        meta["init_head_start"] = True
    return meta
