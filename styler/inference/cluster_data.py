"""Stylize a ``ray.data.Dataset`` of images: the Python API of :mod:`styler.inference.cluster`
for people who already hold their images in Ray Data.

    import ray
    from styler.inference.cluster_data import stylize_dataset

    photos = ray.data.read_images("s3://bucket/photos/")           # an "image" column of arrays
    stylize_dataset(photos, "starry").write_images("out/", column="image", file_format="png")

    files = ray.data.read_binary_files("photos/")                   # a "bytes" column of files
    stylize_dataset(files, "starry", column="bytes")                 # EXIF orientation and alpha kept

The dataset stays lazy: Ray Data runs it when it is consumed, through a pool of workers (Ray
actors) that each load the style once and stylize equal-size images of a batch together, as
many at once as fit ``batch_pixels`` (the local pipeline's rule: a larger image goes alone).
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from styler.config import ApplyConfig, ClusterConfig, FolderConfig
from styler.errors import ImageError
from styler.inference.cluster import StyleWorker, for_workers, import_ray, pool_shape
from styler.inference.pipeline import images_per_batch
from styler.inference.stylizer import Stylizer, join_alpha
from styler.io.images import pil_to_tensor, split_alpha


def stylize_dataset(dataset: Any, style: str | Path, *, column: str = "image", weights_dir: Path | None = None,
                    device: str = "auto", config: ApplyConfig | None = None, batch_size: int = 4,
                    batch_pixels: int = FolderConfig().batch_pixels, cluster: ClusterConfig | None = None) -> Any:
    """``dataset`` with every image of ``column`` stylized into an (H, W, 3) uint8 array, or
    (H, W, 4) for an image with alpha. ``column`` holds (H, W, 3) or (H, W, 4) uint8 arrays (as
    ``ray.data.read_images`` makes them) or encoded image files as bytes (``read_binary_files``'s
    "bytes"). ``batch_size`` rows go to a worker at a time, and of those the equal-size images
    go through the network together up to ``batch_pixels`` pixels. ``cluster`` sets the workers and GPUs per worker (its address is not used: this
    runs on the cluster ``dataset`` belongs to, connected to as Ray Data would)."""
    ray = import_ray()
    if not ray.is_initialized():
        ray.init()  # what Ray Data itself does on first use; the pool size needs the cluster
    cluster = cluster or ClusterConfig()
    workers, gpus = pool_shape(ray, cluster)
    args = (*for_workers(style, weights_dir), device, config or ApplyConfig())
    return dataset.map_batches(StyleWorker, fn_constructor_args=args,
                               fn_kwargs={"column": column, "batch_pixels": batch_pixels}, batch_size=batch_size, batch_format="numpy", concurrency=(1, workers),
                               num_cpus=cluster.cpus_per_worker, num_gpus=gpus)


def _image(value: Any, index: int) -> Image.Image:
    """One cell of the image column as a PIL image (EXIF orientation applied to files)."""
    if isinstance(value, (bytes, bytearray, memoryview)):
        try:
            with Image.open(io.BytesIO(bytes(value))) as img:
                img.load()
                return ImageOps.exif_transpose(img)
        except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
            raise ImageError(f"row {index} of the batch: not an image Pillow can read ({exc})") from exc
    array = np.asarray(value)
    if array.dtype != np.uint8 or array.ndim != 3 or array.shape[2] not in (3, 4):
        raise ImageError(f"row {index} of the batch: expected an (H, W, 3) or (H, W, 4) uint8 array or "
                         f"encoded bytes, got {array.dtype} {array.shape}")
    return Image.fromarray(array)  # RGB or RGBA by the last axis


def stylize_batch(stylizer: Stylizer, batch: dict[str, Any], column: str,
                  batch_pixels: int = FolderConfig().batch_pixels) -> dict[str, Any]:
    """``batch`` (Ray Data's numpy format) with ``column``'s images stylized, equal sizes together
    up to ``batch_pixels`` pixels at a time."""
    if column not in batch:
        raise ImageError(f"the dataset has no column {column!r} (it has {', '.join(sorted(batch))}); "
                         f"pass column='bytes' for read_binary_files")
    split = [split_alpha(_image(value, i), stylizer.config.max_size) for i, value in enumerate(batch[column])]
    return {**batch, column: _column(_stylize(stylizer, split, batch_pixels))}


def _stylize(stylizer: Stylizer, split: list[tuple[Image.Image, Image.Image | None]],
             batch_pixels: int) -> list[np.ndarray]:
    """Each (RGB, alpha) image stylized, equal sizes through the network together."""
    groups: dict[tuple[int, int], list[int]] = {}
    for i, (rgb, _) in enumerate(split):
        groups.setdefault(rgb.size, []).append(i)
    out: list[np.ndarray] = [np.empty(0)] * len(split)
    for (width, height), same in groups.items():
        step = images_per_batch(width * height, batch_pixels)
        for indices in (same[start:start + step] for start in range(0, len(same), step)):
            styled = stylizer.stylize_tensor(torch.stack([pil_to_tensor(split[i][0]) for i in indices]))
            for i, pixels in zip(indices, styled):
                out[i] = np.asarray(join_alpha(pixels, split[i][1]))
    return out


def _column(arrays: list[np.ndarray]) -> np.ndarray:
    """One array when every image has one shape, else an object array of them (Ray Data's ragged column)."""
    if len({a.shape for a in arrays}) == 1:
        return np.stack(arrays)
    ragged = np.empty(len(arrays), dtype=object)
    for i, array in enumerate(arrays):
        ragged[i] = array
    return ragged
