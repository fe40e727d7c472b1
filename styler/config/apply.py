"""What using a style reads: one image, a folder, a video, the web page and the cluster."""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass

from styler.config.base import Precision, TileStats, _check


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
