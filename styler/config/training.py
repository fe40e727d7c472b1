"""What training reads: the networks' layouts, the losses, a run's options and the recipes
(the offline one, the head start, the budget)."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any, Mapping

from styler.config.base import (
    T, Features, Precision, Preprocess, StyleLoss, Upsample, _check, _finite_nonneg,
)
from styler.errors import ConfigError


@dataclass(frozen=True)
class GeneratorConfig:
    """Architecture of the feed-forward generator (see :mod:`styler.nn.generator`)."""

    base_channels: int = 16
    num_residual: int = 5
    upsample: Upsample = Upsample.BILINEAR
    antialias: bool = False
    # False: the output is (tanh(head) + 1) / 2, as Johnson et al.'s network ends. True: the
    # output is head + input, which keeps the generator near the identity (a colour filter)
    # however the loss is weighted; weights files that set it load with it.
    input_skip: bool = False
    # Halvings between the input and the residual blocks (the first is the pixel-unshuffle stem):
    # 2 puts them at 1/4 (Johnson et al.'s layout), so small detail (faces, lattices) survives;
    # 3 at 1/8 with twice the channels: the same FLOPs in the blocks on a coarser grid, larger
    # strokes (docs/bundled-styles.md, "Round 3").
    num_downsamples: int = 2

    def __post_init__(self) -> None:
        _check(isinstance(self.upsample, Upsample), f"upsample must be an Upsample, got {self.upsample!r}")
        _check(1 <= self.num_downsamples <= 4, f"num_downsamples must be 1..4, got {self.num_downsamples}")
        _check(1 <= self.base_channels <= 256, f"base_channels must be 1..256, got {self.base_channels}")
        _check(0 <= self.num_residual <= 16, f"num_residual must be 0..16, got {self.num_residual}")

    @property
    def stride(self) -> int:
        """Inputs are padded internally to a multiple of this (one per halving)."""
        return 2 ** self.num_downsamples


@dataclass(frozen=True)
class DiscriminatorConfig:
    """PatchGAN layout; 3 layers give the 70x70 receptive field of pix2pix. 32 base channels
    instead of pix2pix's 64: a quarter of the discriminator's cost, at the same losses and look
    (docs/performance.md#training-speed)."""

    base_channels: int = 32
    num_layers: int = 3

    def __post_init__(self) -> None:
        _check(1 <= self.base_channels <= 512, f"discriminator base_channels must be 1..512, got {self.base_channels}")
        _check(1 <= self.num_layers <= 6, f"discriminator num_layers must be 1..6, got {self.num_layers}")


# Layers follow the peers: Johnson et al. / pytorch examples for VGG-16; for VGG-19 and the
# random network, Gatys et al.'s style layers up to relu4_1 and content at relu3_1, the layers the
# offline study trained with (docs/offline-quality.md).
DEFAULT_LAYERS: dict[Features, tuple[str, tuple[str, ...]]] = {
    Features.VGG16: ("relu2_2", ("relu1_2", "relu2_2", "relu3_3", "relu4_3")),
    Features.VGG19: ("relu3_1", ("relu1_1", "relu2_1", "relu3_1", "relu4_1")),
    Features.RANDOM: ("relu3_1", ("relu1_1", "relu2_1", "relu3_1", "relu4_1")),
}


@dataclass(frozen=True)
class LossConfig:
    """Weights of the loss terms. Content and style terms are normalised by their targets'
    magnitude, so the weights mean the same for any feature network and image size."""

    content_weight: float = 1.0
    style_weight: float = 5.0
    # Off: beside the normalised content and style terms (a total near 2) the TV term (a mean
    # neighbour difference, ~0.05) acts from a weight near 1, which trims high-frequency noise
    # (docs/offline-quality.md); scripts/train_bundled.sh passes the bundled styles' 1e-4.
    tv_weight: float = 0.0
    adv_weight: float = 0.05
    style_loss: StyleLoss = StyleLoss.GRAM
    # Steady video: the same strokes for the photo moved by up to the generator's stride and with
    # Gaussian noise up to this standard deviation (styler.training.losses.TemporalLoss). 0 = off.
    temporal_weight: float = 0.0
    temporal_noise: float = 0.05

    def __post_init__(self) -> None:
        for name in ("content_weight", "style_weight", "tv_weight", "adv_weight", "temporal_weight"):
            _finite_nonneg(name, getattr(self, name))
        _check(isinstance(self.temporal_noise, (int, float)) and 0 <= self.temporal_noise <= 0.5,
               f"temporal noise must be between 0 and 0.5, got {self.temporal_noise!r}")
        _check(self.content_weight + self.style_weight > 0, "content and style weight cannot both be 0")


@dataclass(frozen=True)
class TrainConfig:
    """Everything that shapes a training run. Paths live here too so a run can be resumed."""

    name: str = ""
    steps: int = 2000
    batch_size: int = 4
    image_size: int = 256
    style_size: int = 512
    lr: float = 1e-3
    d_lr: float = 2e-4
    # The discriminator is updated on every d_every-th step (the generator's adversarial term is
    # computed on every step). Every other step saved 8% of a CPU step and trained the same styles
    # on held-out paintings (docs/performance.md, "The discriminator every other step").
    d_every: int = 2
    features: Features = Features.VGG16
    vgg_preprocess: Preprocess = Preprocess.AUTO
    # Loss-network layers; empty: the network's defaults (DEFAULT_LAYERS). Names as relu3_3.
    content_layer: str = ""
    style_layers: tuple[str, ...] = ()
    seed: int = 0
    num_workers: int = 2
    log_every: int = 10
    # Random features only: divide every VGG width by this. Half width costs a quarter of the
    # FLOPs, which is what makes offline training on a CPU affordable (docs/offline-quality.md).
    feature_width_divisor: int = 1
    # Validation on a held-out, seeded set of content photos (see styler.training.validation.split_validation).
    val_fraction: float = 0.02
    val_every: int = 100
    # 0 = no early stopping: the cosine schedule only reaches its small final steps at the end,
    # so stopping early skips the part that cleans up noise; the best weights are kept anyway.
    patience: int = 0
    checkpoint_every: int = 200
    preview_every: int = 200
    precision: Precision = Precision.AUTO
    compile: bool = False
    # "" trains from scratch; a style name or weights file starts from that generator; HEAD_START
    # from the painter's head start (what defaults_for gives every ImageNet-feature run).
    init_from: str = ""
    # Wall-clock seconds for the whole run, setup included; 0 = off. With a budget, the trainer
    # measures its step time and sets ``steps`` (and the validation cadence) to fit, and stops at
    # the deadline if the machine slows down (styler.training.budget).
    budget_seconds: float = 0.0
    generator: GeneratorConfig = field(default_factory=GeneratorConfig)
    discriminator: DiscriminatorConfig = field(default_factory=DiscriminatorConfig)
    loss: LossConfig = field(default_factory=LossConfig)

    def __post_init__(self) -> None:
        # JSON (run.json, checkpoints) gives a list; a tuple keeps configs comparable and hashable.
        object.__setattr__(self, "style_layers", tuple(self.style_layers))
        self._check_sizes()
        self._check_run()

    def _check_sizes(self) -> None:
        _check(self.batch_size >= 1, f"batch size must be >= 1, got {self.batch_size}")
        _check(self.image_size >= 16, f"image size must be >= 16 pixels, got {self.image_size}")
        _check(self.image_size % self.generator.stride == 0,
               f"image size must be a multiple of the generator stride {self.generator.stride}, "
               f"got {self.image_size}")
        _check(self.style_size >= 16, f"style size must be >= 16 pixels, got {self.style_size}")
        _check(self.loss.temporal_weight == 0 or self.image_size >= 8 * self.generator.stride,
               f"the temporal loss compares crops {self.generator.stride} px apart away from the edges: "
               f"image size must be >= {8 * self.generator.stride} pixels with it, got {self.image_size}")
        _check(self.feature_width_divisor in (1, 2, 4, 8),
               f"feature width divisor must be 1, 2, 4 or 8, got {self.feature_width_divisor}")
        _check(self.feature_width_divisor == 1 or self.features is Features.RANDOM,
               "a feature width divisor other than 1 only applies to --features random "
               "(ImageNet weights have fixed widths)")

    def _check_run(self) -> None:
        _check(self.steps >= 1, f"steps must be >= 1, got {self.steps}")
        for name in ("lr", "d_lr"):
            value = getattr(self, name)
            _check(math.isfinite(value) and value > 0, f"{name} must be a finite number > 0, got {value!r}")
        _check(self.d_every >= 1, f"d_every must be >= 1, got {self.d_every}")
        _check(self.num_workers >= 0, f"num_workers must be >= 0, got {self.num_workers}")
        _check(self.log_every >= 1, f"log_every must be >= 1, got {self.log_every}")
        _check(isinstance(self.val_fraction, (int, float)) and math.isfinite(self.val_fraction)
               and 0 <= self.val_fraction <= 0.5,
               f"val fraction must be between 0 and 0.5, got {self.val_fraction!r}")
        for name in ("val_every", "checkpoint_every"):
            _check(getattr(self, name) >= 1, f"{name} must be >= 1, got {getattr(self, name)}")
        _check(isinstance(self.budget_seconds, (int, float)) and math.isfinite(self.budget_seconds)
               and self.budget_seconds >= 0, f"budget must be a finite number of seconds >= 0, got {self.budget_seconds!r}")
        for name in ("patience", "preview_every"):
            _check(getattr(self, name) >= 0, f"{name} must be >= 0 (0 turns it off), got {getattr(self, name)}")

    @property
    def loss_layers(self) -> tuple[str, tuple[str, ...]]:
        """(content layer, style layers): the ones asked for, else the feature network's defaults."""
        content, style = DEFAULT_LAYERS[self.features]
        return self.content_layer or content, self.style_layers or style


# What ``--features random`` starts from unless told otherwise: the offline recipe that won the
# study in docs/offline-quality.md (sliced Wasserstein style loss, half-width random network, a
# TV weight large enough to matter, the residual blocks at 1/8 and the 64-channel discriminator
# it was tuned with). Options the user types still override each field.
# The offline recipe was tuned with the discriminator learning on every step.
OFFLINE_DEFAULTS = TrainConfig(features=Features.RANDOM, feature_width_divisor=2, d_every=1,
                               generator=GeneratorConfig(num_downsamples=3),
                               discriminator=DiscriminatorConfig(base_channels=64),
                               loss=LossConfig(style_loss=StyleLoss.SLICED, tv_weight=1.0))


# The painter's head start: a generator pre-trained across many paintings, shipped in the package
# (styler/weights/pretrained/); every ImageNet-feature style starts from it unless told otherwise.
HEAD_START = "head-start"
# ``--init-from none``: train from scratch.
NO_INIT = "none"


def defaults_for(features: Features) -> TrainConfig:
    """The default training configuration for a loss network: ImageNet features start from the
    head start, random features (another layout, other losses) from scratch."""
    if features is Features.RANDOM:
        return OFFLINE_DEFAULTS
    return TrainConfig(features=features, init_from=HEAD_START)


@dataclass(frozen=True)
class BudgetRecipe:
    """What ``styler train --budget`` picks for the machine it runs on (options the user types win):
    crops and painting size as the bundled styles were trained on a CPU, larger crops on a GPU
    where a step costs little, and how the measured time is spent."""

    cpu_image_size: int = 128
    gpu_image_size: int = 256
    style_size: int = 256
    validations: int = 8  # validations over the run (the best validated generator is kept)
    # Of the time left after setup and the probe, the share planned for steps and validations
    # (with their previews and checkpoints); the rest absorbs logging, the progress display and
    # a machine that slows down.
    safety: float = 0.92
    # The probe before planning; every update it makes is undone. The first steps of a process
    # run slow (its allocator's first page faults, kernel choices), so a few are not timed; of
    # the timed ones (the first after a validation, to see what that costs the next step), the
    # median of the rest is the step time. Cheap steps (a GPU's) are timed up to probe_seconds.
    warmup_steps: int = 2
    probe_steps: int = 3
    max_probe_steps: int = 20
    probe_seconds: float = 1.0
    finish_seconds: float = 1.0  # the finish's small files and summary, beside what the probe times


BUDGET = BudgetRecipe()
# A first preview this early shows that training works, minutes before the regular ones.
FIRST_PREVIEW_STEP = 20


def from_dict(cls: type[T], data: Mapping[str, Any]) -> T:
    """Build a config dataclass from a mapping, rejecting unknown keys with a clear error."""
    if not isinstance(data, Mapping):
        raise ConfigError(f"{cls.__name__}: expected a mapping, got {type(data).__name__}")
    known = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(data) - set(known))
    if unknown:
        raise ConfigError(f"{cls.__name__}: unknown field(s) {', '.join(unknown)}")
    kwargs: dict[str, Any] = {}
    nested = {"generator": GeneratorConfig, "discriminator": DiscriminatorConfig, "loss": LossConfig}
    enums = {"features": Features, "style_loss": StyleLoss, "precision": Precision, "upsample": Upsample,
             "vgg_preprocess": Preprocess}
    for key, value in data.items():
        if key in nested and isinstance(value, Mapping):
            value = from_dict(nested[key], value)
        elif key in enums:
            try:
                value = enums[key](value)
            except ValueError as exc:
                raise ConfigError(f"{cls.__name__}: bad {key} {value!r}") from exc
        kwargs[key] = value
    try:
        return cls(**kwargs)
    except TypeError as exc:
        raise ConfigError(f"{cls.__name__}: {exc}") from exc
