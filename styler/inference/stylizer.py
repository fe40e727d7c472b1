"""Single-pass stylization: the :class:`Stylizer` API that the CLI and :mod:`styler.inference.pipeline` use.

A :class:`Stylizer` takes PIL images, (3, H, W) tensors or (N, 3, H, W) batches. Images above a
pixel budget (or every image, with ``ApplyConfig.tile``) go through :mod:`styler.inference.tiling`, so
memory stays bounded however large the photo is.
"""

from __future__ import annotations

import os
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Callable, Iterable, Iterator, overload

import torch
from PIL import Image, ImageOps

from styler.config import AUTO, ApplyConfig, DeviceChoice, TileStats, VideoConfig
from styler.device import autocast, compute_dtype, memory_format, resolve_device
from styler.errors import ConfigError, ImageError
from styler.inference.guided import at_stroke_scale, auto_stroke_scale
from styler.inference.tiling import GlobalStatsGenerator, tiled_forward
from styler.io.images import LUMA, open_image, pil_to_tensor, split_alpha, tensor_to_pil
from styler.io.weights import WeightsInfo, resolve_weights
from styler.nn import Generator
from styler.nn.fast import FastGenerator
from styler.nn.generator import load_generator

# Tile side used when an image is tiled because it exceeds ApplyConfig.max_tile_pixels.
AUTO_TILE = 1024

# ITU-R BT.601 RGB <-> YCbCr (as JPEG uses), for colour preservation.
_TO_YCC = torch.tensor([LUMA, [-0.168736, -0.331264, 0.5], [0.5, -0.418688, -0.081312]])
_FROM_YCC = torch.linalg.inv(_TO_YCC)


def preserve_color(stylized: torch.Tensor, original: torch.Tensor) -> torch.Tensor:
    """Luminance of ``stylized`` with the chroma (Cb, Cr) of ``original``; (N, 3, H, W) in [0, 1]."""
    to_ycc, from_ycc = _TO_YCC.to(stylized), _FROM_YCC.to(stylized)
    y = torch.einsum("ij,njhw->nihw", to_ycc[:1], stylized)
    cbcr = torch.einsum("ij,njhw->nihw", to_ycc[1:], original)
    return torch.einsum("ij,njhw->nihw", from_ycc, torch.cat([y, cbcr], 1)).clamp(0, 1)


def join_alpha(tensor: torch.Tensor, alpha: Image.Image | None) -> Image.Image:
    """(3, H, W) in [0, 1] plus optional alpha -> RGB or RGBA PIL image."""
    out = tensor_to_pil(tensor)
    if alpha is not None:
        out.putalpha(alpha)
    return out


class Stylizer:
    """A loaded style. ``Stylizer.load("starry")(pil_image)`` returns the stylized image.

    Accepts a PIL image (any mode; alpha is kept; EXIF orientation applied), a path, a (3, H, W)
    tensor or a (N, 3, H, W) batch (float in [0, 1] or uint8), or an (H, W, 3) numpy array, and
    returns the same kind (a PIL image for a path). ``config`` sets strength, colour preservation, tiling and
    precision (see :class:`styler.config.ApplyConfig`).
    """

    def __init__(self, generator: Generator, info: WeightsInfo | None = None,
                 device: torch.device | str = "cpu", config: ApplyConfig | None = None) -> None:
        self.device = torch.device(device)
        self.config = config or ApplyConfig()
        self.dtype = compute_dtype(self.config.precision, self.device, inference=True)
        self.generator = generator.to(self.device, memory_format=memory_format(self.device)).eval()
        # Same outputs (within float rounding), ~1.4x faster and ~3x less peak memory untiled:
        # the upsample-then-conv layers run as sub-pixel convolutions (docs/performance.md).
        self.fast = FastGenerator.from_generator(self.generator)
        self.info = info
        self._tiler: GlobalStatsGenerator | None = None
        check_tile(self.config.tile, self.generator.config.stride, self.name)

    def __repr__(self) -> str:
        precision = str(self.dtype).removeprefix("torch.")
        return (f"Stylizer(style={self.name!r}, device='{self.device}', precision='{precision}', "
                f"stroke_scale={self.config.stroke_scale!r})")

    @classmethod
    def load(cls, style: str | Path, *, weights_dir: Path | None = None,
             device: DeviceChoice | str = DeviceChoice.AUTO, config: ApplyConfig | None = None) -> "Stylizer":
        """Load a style by name (from the weights directory) or by path to a ``.safetensors``."""
        path = resolve_weights(str(style), weights_dir)
        dev = resolve_device(device)
        if dev.type == "cuda" and dev.index is None and "LOCAL_RANK" in os.environ:
            dev = torch.device("cuda", int(os.environ["LOCAL_RANK"]))  # one GPU per torchrun rank
        generator, info = load_generator(path, dev)
        return cls(generator, info, dev, config)

    @property
    def name(self) -> str:
        return self.info.name if self.info else "styled"

    @property
    def training_size(self) -> int | None:
        """The crop size the style was trained at, when its weights file records it."""
        size = self.info.metadata.get("image_size") if self.info else None
        return int(size) if isinstance(size, (int, float, str)) and str(size).isdigit() else None

    def stroke_scale_for(self, height: int, width: int) -> float:
        """The stroke scale an image of this size is stylized at (``auto`` resolved)."""
        if self.config.stroke_scale == AUTO:
            return auto_stroke_scale(height, width, self.training_size)
        return float(self.config.stroke_scale)

    def settings(self) -> str:
        """What decides the pixels of a result, as one line (see :func:`describe_settings`)."""
        return describe_settings(self.info, self.config)

    def _autocast(self) -> AbstractContextManager[object]:
        return autocast(self.device, self.dtype)

    def tile_size(self, height: int, width: int) -> int | None:
        """The tile side for an image of this size, or None to run it whole."""
        if self.config.tile is not None:
            return self.config.tile if max(height, width) > self.config.tile else None
        if self.config.max_tile_pixels and height * width > self.config.max_tile_pixels:
            return AUTO_TILE
        return None

    def _network(self, x: torch.Tensor) -> torch.Tensor:
        """Raw generator output, float32, on ``x``'s device when tiled (huge images stay there)."""
        tile = self.tile_size(*x.shape[-2:])
        if tile is not None:
            return tiled_forward(self.stats_model(), x, tile, self.device, self._autocast, self.config.stats_size,
                                 stats=self.config.tile_stats)
        with self._autocast():
            return self.fast(x.to(self.device, memory_format=memory_format(self.device))).float()

    def stats_model(self) -> GlobalStatsGenerator:
        """The generator with norms whose statistics can be set from outside (tiling, video)."""
        if self._tiler is None:
            self._tiler = GlobalStatsGenerator(self.generator)
        return self._tiler

    @torch.inference_mode()
    def stylize_tensor(self, batch: torch.Tensor,
                       network: Callable[[torch.Tensor], torch.Tensor] | None = None) -> torch.Tensor:
        """(N, 3, H, W) in [0, 1] -> stylized batch of the same size, strength, stroke scale and
        colour applied. ``network`` replaces the plain forward (:mod:`styler.inference.temporal` uses it)."""
        if batch.ndim != 4 or batch.shape[1] != 3:
            raise ImageError(f"expected a (N, 3, H, W) tensor, got shape {tuple(batch.shape)}")
        if self.config.strength == 0.0:
            return batch.clone()
        x = batch.float()
        scale = self.stroke_scale_for(*x.shape[-2:])
        out = at_stroke_scale(x, scale, network or self._network).clamp_(0, 1)
        x = x.to(out.device)
        if self.config.preserve_color:
            out = preserve_color(out, x)
        if self.config.strength < 1.0:
            out = torch.lerp(x, out, self.config.strength)
        return out.to(batch.device)

    @overload
    def __call__(self, image: Image.Image) -> Image.Image: ...
    @overload
    def __call__(self, image: torch.Tensor) -> torch.Tensor: ...
    @overload
    def __call__(self, image: str | os.PathLike[str]) -> Image.Image: ...

    def __call__(self, image):
        """Stylize a PIL image (EXIF orientation applied, as the CLI does), a path, a tensor
        ((3, H, W) or (N, 3, H, W): float in [0, 1], or uint8 in 0..255 as ``torchvision.io``
        reads them) or a numpy array ((H, W, 3) uint8, or float in [0, 1]); returns the same kind."""
        if isinstance(image, (str, os.PathLike)):
            return self(open_image(Path(image), self.config.max_size))
        if isinstance(image, torch.Tensor):
            x = _unit_float(image)
            out = self.stylize_tensor(x[None])[0] if x.ndim == 3 else self.stylize_tensor(x)
            return out.mul(255).round_().to(torch.uint8) if image.dtype == torch.uint8 else out
        if type(image).__module__ == "numpy":
            return self._call_array(image)
        if not isinstance(image, Image.Image):
            raise ImageError(f"expected a PIL image, a path, a tensor or a numpy array, got {type(image).__name__}")
        rgb, alpha = split_alpha(ImageOps.exif_transpose(image), self.config.max_size)
        return join_alpha(self.stylize_tensor(pil_to_tensor(rgb)[None])[0], alpha)

    def stylize_frames(self, frames: Iterable[Image.Image | torch.Tensor],
                       config: VideoConfig | None = None) -> Iterator[Image.Image | torch.Tensor]:
        """Stylize a stream of frames in order (a webcam, a decoder of your own) and yield each
        stylized frame as soon as its batch is done, of the kind it came in (PIL or (3, H, W)).

        ``config`` (a :class:`VideoConfig`, the same as for files) steadies the frames with
        ``config.temporal`` (:mod:`styler.inference.temporal`): SHARED, the default, takes its
        statistics from the first ``config.stats_frames`` frames, so it suits a stream whose scene
        does not change; EMA suits an endless one. ``config.batch_size`` frames go through together.
        """
        from styler.inference.temporal import stylize_frames

        return stylize_frames(self, frames, config or VideoConfig())

    def stylize_video(self, src: str | Path, dst: str | Path, config: VideoConfig | None = None,
                      on_frame: Callable[[int, int | None], None] | None = None) -> int:
        """Stylize a video (or an animated GIF/WebP) file to ``dst``; returns the frames written.

        Frame rate and timestamps, size, rotation and audio are kept (see :mod:`styler.inference.video`).
        ``on_frame(done, total)`` is called after every batch (total None when unknown).
        """
        from styler.inference.video import stylize_file

        return stylize_file(self, Path(src), Path(dst), config or VideoConfig(), on_frame)

    def _call_array(self, array):  # numpy.ndarray -> numpy.ndarray of the same dtype kind
        if array.ndim != 3 or array.shape[2] != 3:
            raise ImageError(f"expected an (H, W, 3) array, got shape {tuple(array.shape)}")
        out = self(torch.from_numpy(array.copy()).permute(2, 0, 1))
        if array.dtype.kind == "f":
            return out.permute(1, 2, 0).numpy().astype(array.dtype)
        return out.permute(1, 2, 0).contiguous().numpy()


def describe_settings(info: WeightsInfo | None, config: ApplyConfig) -> str:
    """What decides the pixels of a result of the style ``info`` describes, as one line: outputs
    record it, so a rerun with the same style and settings skips them and one with other
    settings redoes them. It needs the weights file's header only, not the network (a Ray
    driver plans a run without loading the style)."""
    style = info.name if info else "styled"
    if info is not None and info.metadata.get("created_utc"):
        style += f" {info.metadata['created_utc']}"  # another training of the same name
    parts = [f"style {style}", f"strength {config.strength:g}", f"stroke scale {config.stroke_scale}",
             f"max size {config.max_size or 'none'}", f"precision {config.precision.value}"]
    if config.preserve_color:
        parts.append("preserve color")
    if config.tile_stats is TileStats.DOWNSCALED:  # exact tiles equal the untiled pass
        parts.append(f"downscaled tiles {config.tile or 'auto'} stats {config.stats_size}")
    return "; ".join(parts)


def check_tile(tile: int | None, stride: int, style: str) -> None:
    """A tile side must be a multiple of the style's stride (tiles start on its sampling grid);
    the error names the nearest sizes that fit."""
    if tile is None or tile % stride == 0:
        return
    below = tile - tile % stride  # tile >= 64, a multiple of every stride, so below >= 64 too
    raise ConfigError(f"tile={tile} does not fit style {style!r}: tiles are a multiple of its stride, {stride} "
                      f"(such as {below} or {below + stride}); a multiple of 16 fits every style")


def _unit_float(image: torch.Tensor) -> torch.Tensor:
    """A float tensor in [0, 1]: uint8 is scaled from 0..255; a float tensor outside [0, 1] is an
    error (stylizing 0..255 values as if they were 0..1 gives a near-white image, silently)."""
    if image.dtype == torch.uint8:
        return image.float().div_(255.0)
    if not image.is_floating_point():
        raise ImageError(f"expected a float tensor in [0, 1] or uint8 in 0..255, got {image.dtype}")
    low, high = (float(v) for v in image.aminmax()) if image.numel() else (0.0, 0.0)
    if low < -1e-3 or high > 1 + 1e-3:
        raise ImageError(f"tensor values span {low:.4g}..{high:.4g}, expected [0, 1]; "
                         f"divide 0..255 data by 255 or pass a uint8 tensor")
    return image
