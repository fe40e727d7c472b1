"""Typed errors: library code raises these, the CLI turns them into one clear line."""

from __future__ import annotations


class StylerError(Exception):
    """Base class for every error styler reports to a user."""


class ConfigError(StylerError, ValueError):
    """A setting is out of range or inconsistent (negative weight, zero size, ...)."""


class ImageError(StylerError):
    """An image could not be read, decoded or written."""


class DataError(StylerError):
    """The training data is missing, empty or unusable."""


class WeightsError(StylerError):
    """A weights file is missing, corrupted or does not match the expected architecture."""


class FeatureWeightsError(StylerError):
    """ImageNet weights for the loss network are not available."""


class DeviceError(StylerError):
    """The requested compute device is not available."""


class TrainingError(StylerError):
    """Training could not continue (for example a loss turned NaN)."""


class VideoError(ImageError):
    """A video or animated image could not be read, stylized or written (or PyAV is missing)."""


class ClusterError(StylerError):
    """A Ray cluster could not be reached or used (or Ray is not installed)."""
