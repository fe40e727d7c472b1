"""Constants, enums and helpers shared by every config: the file-format version, the file
extensions styler reads, the data folders, the checks and the JSON form."""

from __future__ import annotations

import dataclasses
import enum
import json
import math
import os
from pathlib import Path
from typing import Any, TypeVar

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
    autocast where it is faster than fp32 (:func:`styler.device.bf16_pays`: CUDA GPUs and CPUs
    with native bf16 for training, CUDA GPUs and CPUs with AMX for inference), fp32 elsewhere;
    fp16 needs CUDA (and trains with loss scaling)."""

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
