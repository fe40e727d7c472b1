"""The one place for defaults: frozen dataclasses that every other module and the CLI read.

Each config validates itself in ``__post_init__`` and raises :class:`ConfigError`, so a bad
value is reported the same way whether it came from the CLI, the Python API or a weights file.
Shared constants and helpers live in :mod:`.base`, training's options in :mod:`.training`, the
options for using a style in :mod:`.apply`; everything is imported from ``styler.config``.
"""

from styler.config.base import (
    FORMAT_VERSION, WEIGHTS_ENV, HOME_ENV, LR_FLOOR, IMAGE_EXTENSIONS, HEIF_EXTENSIONS, RAW_EXTENSIONS,
    VIDEO_EXTENSIONS, Features, Preprocess, StyleLoss, Upsample, Precision, TileStats, DeviceChoice,
    default_data_dir, default_weights_dir, to_json,
)
from styler.config.training import (
    GeneratorConfig, DiscriminatorConfig, DEFAULT_LAYERS, LossConfig, TrainConfig, OFFLINE_DEFAULTS,
    HEAD_START, NO_INIT, defaults_for, BudgetRecipe, BUDGET, FIRST_PREVIEW_STEP, from_dict,
)
from styler.config.apply import (
    OutputFormat, ExportFormat, DEFAULT_MAX_TILE_PIXELS, MIN_TILE, AUTO, ApplyConfig, FolderConfig, UiConfig,
    Temporal, VideoConfig, Engine, ClusterConfig,
)

__all__ = [
    "AUTO",
    "ApplyConfig",
    "BUDGET",
    "BudgetRecipe",
    "ClusterConfig",
    "DEFAULT_LAYERS",
    "DEFAULT_MAX_TILE_PIXELS",
    "DeviceChoice",
    "DiscriminatorConfig",
    "Engine",
    "ExportFormat",
    "FIRST_PREVIEW_STEP",
    "FORMAT_VERSION",
    "Features",
    "FolderConfig",
    "GeneratorConfig",
    "HEAD_START",
    "HEIF_EXTENSIONS",
    "HOME_ENV",
    "IMAGE_EXTENSIONS",
    "LR_FLOOR",
    "LossConfig",
    "MIN_TILE",
    "NO_INIT",
    "OFFLINE_DEFAULTS",
    "OutputFormat",
    "Precision",
    "Preprocess",
    "RAW_EXTENSIONS",
    "StyleLoss",
    "Temporal",
    "TileStats",
    "TrainConfig",
    "UiConfig",
    "Upsample",
    "VIDEO_EXTENSIONS",
    "VideoConfig",
    "WEIGHTS_ENV",
    "default_data_dir",
    "default_weights_dir",
    "defaults_for",
    "from_dict",
    "to_json",
]
