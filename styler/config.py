"""The one place for defaults: frozen dataclasses that every other module and the CLI read.

Each config validates itself in ``__post_init__`` and raises :class:`ConfigError`, so a bad
value is reported the same way whether it came from the CLI, the Python API or a weights file.
"""

from __future__ import annotations

import dataclasses
import enum
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, TypeVar

from styler.errors import ConfigError

FORMAT_VERSION = 2  # of weights files and run.json
WEIGHTS_ENV = "STYLER_WEIGHTS_DIR"
HOME_ENV = "STYLER_HOME"
# The generator's cosine learning-rate schedule ends at this fraction of --lr.
LR_FLOOR = 0.1
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff", ".gif")
# Read through pillow-heif (the optional ``styler[heif]`` extra; iPhones shoot HEIC); never written.
HEIF_EXTENSIONS = (".heic", ".heif")
# Camera raw files: a folder scan names them as skipped (they need a raw developer first).
RAW_EXTENSIONS = (".cr2", ".cr3", ".crw", ".nef", ".nrw", ".arw", ".srf", ".sr2", ".dng", ".orf", ".rw2",
                  ".raf", ".pef", ".srw", ".x3f", ".3fr", ".erf", ".kdc", ".mrw", ".iiq", ".rwl")
# Read and written through PyAV (the optional ``styler[video]`` extra); see styler.io.video.
VIDEO_EXTENSIONS = (".mp4", ".mov", ".mkv", ".webm", ".m4v", ".avi")


class Features(str, enum.Enum):
    """Which loss network supplies the perceptual features."""

    VGG16 = "vgg16"
    VGG19 = "vgg19"
    RANDOM = "random"


class Preprocess(str, enum.Enum):
    """Input convention of the loss network's ImageNet weights. AUTO: what the file's source
    implies (see :mod:`styler.nn.vgg_files`)."""

    AUTO = "auto"
    TORCHVISION = "torchvision"  # RGB in [0, 1], ImageNet mean/std
    CAFFE = "caffe"  # BGR, 0-255, minus (103.939, 116.779, 123.68)


class StyleLoss(str, enum.Enum):
    """How feature statistics of the output are matched to the style image."""

    GRAM = "gram"
    SLICED = "sliced"


class Upsample(str, enum.Enum):
    """How the generator's decoder doubles resolution before each 3x3 convolution. NEAREST:
    Johnson et al. / Odena et al.; BILINEAR: smoother, no blocky 2x2 phase structure for the
    convolution to turn into a fine grid (docs/offline-quality.md)."""

    NEAREST = "nearest"
    BILINEAR = "bilinear"


class Precision(str, enum.Enum):
    """Arithmetic of training and inference (:func:`styler.device.compute_dtype`). AUTO: bf16
    autocast where the device computes bf16 natively (:func:`styler.device.native_bf16`), fp32
    elsewhere; fp16 needs CUDA (and trains with loss scaling)."""

    AUTO = "auto"
    FP32 = "fp32"
    BF16 = "bf16"
    FP16 = "fp16"


class TileStats(str, enum.Enum):
    """Where tiles get their instance-norm statistics (see :mod:`styler.inference.tiling`). EXACT: from
    the whole image at full resolution, so tiles equal the untiled pass; DOWNSCALED: from one
    pass over a copy shrunk to ``stats_size`` (faster, approximate)."""

    EXACT = "exact"
    DOWNSCALED = "downscaled"


class DeviceChoice(str, enum.Enum):
    AUTO = "auto"
    CUDA = "cuda"
    MPS = "mps"
    CPU = "cpu"


def _check(condition: bool, message: str) -> None:
    if not condition:
        raise ConfigError(message)


def _finite_nonneg(name: str, value: float) -> None:
    _check(isinstance(value, (int, float)) and math.isfinite(value) and value >= 0,
           f"{name} must be a finite number >= 0, got {value!r}")


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
    # The discriminator is updated on every d_every-th step (the adversarial term of the generator
    # is computed every step); its update is about a third of a CPU step (docs/performance.md).
    d_every: int = 1
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
OFFLINE_DEFAULTS = TrainConfig(features=Features.RANDOM, feature_width_divisor=2,
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
    # Of the time left after setup and the step-time probe, the share planned for steps; the
    # rest absorbs checkpoints, previews and a machine that slows down.
    safety: float = 0.92
    probe_steps: int = 2  # timed steps after one warm-up step; their updates are undone


BUDGET = BudgetRecipe()
# A first preview this early shows that training works, minutes before the regular ones.
FIRST_PREVIEW_STEP = 20


class OutputFormat(str, enum.Enum):
    """File format of stylized images; SAME keeps each input's extension."""

    SAME = "same"
    JPG = "jpg"
    PNG = "png"
    WEBP = "webp"


class ExportFormat(str, enum.Enum):
    """Formats ``styler export`` writes."""

    ONNX = "onnx"
    TORCHSCRIPT = "torchscript"


# Above this many pixels an image is stylized in tiles (bounded memory); see styler.inference.tiling.
DEFAULT_MAX_TILE_PIXELS = 4096 * 4096
# Smallest tile side: tiles overlap by 32 pixels a side (styler.inference.tiling.BLEND).
MIN_TILE = 64
# ``stroke_scale`` value that sizes the strokes to the image (styler.inference.guided.auto_stroke_scale).
AUTO = "auto"


@dataclass(frozen=True)
class ApplyConfig:
    """Inference options for one image (or batch): what :class:`styler.inference.stylizer.Stylizer` does."""

    max_size: int | None = None
    strength: float = 1.0
    preserve_color: bool = False
    # Tile side in pixels; None: tile only above max_tile_pixels. A multiple of the style's
    # stride, which the Stylizer checks (the stride is the weights file's, unknown here).
    tile: int | None = None
    max_tile_pixels: int = DEFAULT_MAX_TILE_PIXELS  # 0 disables automatic tiling
    tile_stats: TileStats = TileStats.EXACT  # where tiles get their normalisation statistics
    stats_size: int = 1024  # longer side of the downscaled pass (TileStats.DOWNSCALED only)
    precision: Precision = Precision.AUTO
    # Strokes this many times larger than at the training resolution: the network runs at 1/S
    # of the size and the photo's detail is restored by guided upsampling (styler.inference.guided).
    # AUTO grows S with the image, so a camera photo looks as painted as a 1000 px one.
    stroke_scale: float | str = AUTO

    def __post_init__(self) -> None:
        _check(self.stroke_scale == AUTO or (isinstance(self.stroke_scale, (int, float))
                                             and math.isfinite(self.stroke_scale) and 0.125 <= self.stroke_scale <= 16),
               f"stroke scale must be 'auto' or between 0.125 and 16, got {self.stroke_scale!r}")
        _check(self.max_size is None or self.max_size >= 1, f"max size must be >= 1, got {self.max_size}")
        _check(math.isfinite(self.strength) and 0.0 <= self.strength <= 1.0,
               f"strength must be between 0 and 1, got {self.strength!r}")
        _check(self.tile is None or self.tile >= MIN_TILE, f"tile size must be at least {MIN_TILE}, got {self.tile}")
        _check(self.max_tile_pixels >= 0, f"max tile pixels must be >= 0, got {self.max_tile_pixels}")
        _check(isinstance(self.tile_stats, TileStats), f"tile stats must be a TileStats, got {self.tile_stats!r}")
        _check(self.stats_size >= 16, f"stats size must be >= 16, got {self.stats_size}")
        _check(isinstance(self.precision, Precision), f"precision must be a Precision, got {self.precision!r}")


@dataclass(frozen=True)
class FolderConfig:
    """How a run over many files finds, schedules and writes them (:mod:`styler.inference.pipeline`)."""

    recursive: bool = True
    overwrite: bool = False  # False: outputs that already exist are skipped (unless made otherwise)
    format: OutputFormat = OutputFormat.SAME
    quality: int = 95
    # Images of one size go through the network together up to this many pixels (a larger one
    # goes alone): memory follows pixels, so four 1 MP photos batch and 10 MP ones do not.
    batch_pixels: int = 2048 * 2048
    workers: int = 2  # decoding threads (encoding uses as many)
    shard: tuple[int, int] | None = None  # (k, n): process the k-th (0-based) of n slices
    max_pixels: int | None = None  # Pillow's decompression-bomb limit during the run; None keeps Pillow's

    def __post_init__(self) -> None:
        _check(1 <= self.quality <= 100, f"quality must be 1..100, got {self.quality}")
        _check(self.batch_pixels >= 1, f"batch pixels must be >= 1, got {self.batch_pixels}")
        _check(self.workers >= 1, f"workers must be >= 1, got {self.workers}")
        if self.shard is not None:
            k, n = self.shard
            _check(n >= 1 and 0 <= k < n, f"shard must be K/N with 0 <= K < N, got {k}/{n}")
        _check(self.max_pixels is None or self.max_pixels >= 1, f"max pixels must be >= 1, got {self.max_pixels}")


@dataclass(frozen=True)
class UiConfig:
    """``styler ui``: where the page is served and what it accepts (:mod:`styler.ui`)."""

    # Loopback: the page can train on any folder of this machine, so it is not offered to the network.
    host: str = "127.0.0.1"
    port: int = 7860
    max_upload_bytes: int = 64 * 2**20  # one file; the pixel limit is Pillow's (styler ui --max-pixels)
    # Uploads are kept in memory only (nothing is written until a training job is accepted); the
    # oldest are forgotten past this many bytes.
    memory_bytes: int = 1024 * 2**20
    grid_size: int = 256  # longer side of each cell of the photo-in-every-style grid
    view_size: int = 768  # longer side of the large preview beside the original
    max_steps: int = 100_000  # training steps a job may ask for
    # Training budgets the form offers, in seconds (as styler train --budget; five minutes picked);
    # a job may ask for any budget up to max_budget, or for a number of steps instead.
    budgets: tuple[int, ...] = (60, 300, 1800)
    default_budget: int = 300
    max_budget: int = 24 * 3600
    # A job's preview images at least this often, so the page shows the style forming (a preview
    # costs about one training step).
    preview_every: int = 20

    def __post_init__(self) -> None:
        _check(0 <= self.port <= 65535, f"port must be 0..65535, got {self.port}")
        for name in ("max_upload_bytes", "memory_bytes", "max_steps", "preview_every", "max_budget"):
            _check(getattr(self, name) >= 1, f"{name.replace('_', ' ')} must be >= 1, got {getattr(self, name)}")
        for name in ("grid_size", "view_size"):
            _check(getattr(self, name) >= 16, f"{name.replace('_', ' ')} must be >= 16, got {getattr(self, name)}")


class Temporal(str, enum.Enum):
    """Where a clip's frames get their instance-norm statistics (see :mod:`styler.inference.temporal`).
    OFF: every frame its own (flickers); SHARED: one set from frames sampled over the whole clip;
    EMA: an exponential moving average over the frames of each shot, reset at scene cuts."""

    OFF = "off"
    SHARED = "shared"
    EMA = "ema"


@dataclass(frozen=True)
class VideoConfig:
    """How videos and animated images are stylized and written (:mod:`styler.inference.video`)."""

    temporal: Temporal = Temporal.SHARED
    codec: str | None = None  # None: by extension (H.264 for .mp4/.mov/.mkv/.avi, VP9 for .webm)
    crf: int = 18  # constant rate factor: lower is better and bigger (x264: 18 looks lossless)
    batch_size: int = 4  # frames stylized together
    stats_frames: int = 8  # frames sampled over the clip for Temporal.SHARED
    ema_decay: float = 0.9  # weight of the running statistics against each new frame's (EMA)
    cut_threshold: float = 0.25  # mean absolute change of a thumbnail (0..1) that starts a new shot

    def __post_init__(self) -> None:
        _check(isinstance(self.temporal, Temporal), f"temporal must be a Temporal, got {self.temporal!r}")
        _check(0 <= self.crf <= 63, f"crf must be 0..63, got {self.crf}")
        _check(self.batch_size >= 1, f"batch size must be >= 1, got {self.batch_size}")
        _check(self.stats_frames >= 1, f"stats frames must be >= 1, got {self.stats_frames}")
        _check(0.0 <= self.ema_decay < 1.0, f"ema decay must be in [0, 1), got {self.ema_decay}")
        _check(0.0 < self.cut_threshold <= 1.0, f"cut threshold must be in (0, 1], got {self.cut_threshold}")


class Engine(str, enum.Enum):
    """Where ``styler apply`` runs: this machine's pipeline, or a Ray cluster (:mod:`styler.inference.cluster`)."""

    LOCAL = "local"
    RAY = "ray"


@dataclass(frozen=True)
class ClusterConfig:
    """How a run is spread over a Ray cluster (:mod:`styler.inference.cluster`)."""

    address: str | None = None  # None: $RAY_ADDRESS, else a cluster running here, else a new local one
    workers: int | None = None  # None: as many as the cluster's GPUs (or CPUs) hold
    gpus_per_worker: float | None = None  # None: 1 where the cluster has GPUs, else 0
    cpus_per_worker: float = 1.0  # also the worker's torch threads on a CPU (Ray sets OMP_NUM_THREADS)
    images_per_task: int = 16  # still images one task carries: a retry redoes at most this many
    retries: int = 3  # times a worker is restarted, and its task retried, after it dies
    connect_timeout: float = 10.0  # seconds to reach the cluster's address before giving up

    def __post_init__(self) -> None:
        _check(self.workers is None or self.workers >= 1, f"workers must be >= 1, got {self.workers}")
        _check(self.gpus_per_worker is None or self.gpus_per_worker >= 0,
               f"gpus per worker must be >= 0, got {self.gpus_per_worker}")
        _check(self.cpus_per_worker > 0, f"cpus per worker must be > 0, got {self.cpus_per_worker}")
        _check(self.images_per_task >= 1, f"images per task must be >= 1, got {self.images_per_task}")
        _check(self.retries >= 0, f"retries must be >= 0, got {self.retries}")
        _check(self.connect_timeout > 0, f"connect timeout must be > 0, got {self.connect_timeout}")


def default_data_dir() -> Path:
    """Where styler keeps your styles and runs, whatever the working folder: ``$STYLER_HOME`` if
    set, else the per-user data folder (``~/.local/share/styler`` on Linux,
    ``~/Library/Application Support/styler`` on macOS, ``%LOCALAPPDATA%\\styler`` on Windows)."""
    home = os.environ.get(HOME_ENV)
    if home:
        return Path(home).expanduser()
    import platformdirs

    return Path(platformdirs.user_data_dir("styler", appauthor=False))


def default_weights_dir() -> Path:
    """Where new styles go: ``$STYLER_WEIGHTS_DIR`` if set, else ``weights`` in the data folder."""
    folder = os.environ.get(WEIGHTS_ENV)
    return Path(folder).expanduser() if folder else default_data_dir() / "weights"


T = TypeVar("T")


def to_json(config: Any) -> str:
    """Serialise a (nested) config dataclass to JSON, enums as their values."""

    def convert(value: Any) -> Any:
        if dataclasses.is_dataclass(value):
            return {f.name: convert(getattr(value, f.name)) for f in dataclasses.fields(value)}
        if isinstance(value, enum.Enum):
            return value.value
        if isinstance(value, (list, tuple)):
            return [convert(v) for v in value]
        return value

    return json.dumps(convert(config), sort_keys=True)


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
