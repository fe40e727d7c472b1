"""Single-pass stylization: the :class:`Stylizer` API that the CLI and :mod:`styler.pipeline` use.

A :class:`Stylizer` takes PIL images, (3, H, W) tensors or (N, 3, H, W) batches. Images above a
pixel budget (or every image, with ``ApplyConfig.tile``) go through :mod:`styler.tiling`, so
memory stays bounded however large the photo is.
"""

from __future__ import annotations

import os
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import overload

import torch
from PIL import Image, ImageOps

from styler.checkpoint import WeightsInfo, load_generator, resolve_weights
from styler.config import ApplyConfig, DeviceChoice, Precision
from styler.device import memory_format, resolve_device
from styler.errors import ConfigError, ImageError
from styler.images import _to_rgb, open_image, pil_to_tensor, resize_longer, tensor_to_pil
from styler.models import Generator
from styler.models.generator import FastGenerator
from styler.tiling import GlobalStatsGenerator, tiled_forward

# Tile side used when an image is tiled because it exceeds ApplyConfig.max_tile_pixels.
AUTO_TILE = 1024

# ITU-R BT.601 RGB <-> YCbCr (as JPEG uses), for colour preservation.
_TO_YCC = torch.tensor([[0.299, 0.587, 0.114], [-0.168736, -0.331264, 0.5], [0.5, -0.418688, -0.081312]])
_FROM_YCC = torch.linalg.inv(_TO_YCC)
_DTYPES = {Precision.FP32: torch.float32, Precision.BF16: torch.bfloat16, Precision.FP16: torch.float16}


def preserve_color(stylized: torch.Tensor, original: torch.Tensor) -> torch.Tensor:
    """Luminance of ``stylized`` with the chroma (Cb, Cr) of ``original``; (N, 3, H, W) in [0, 1]."""
    to_ycc, from_ycc = _TO_YCC.to(stylized), _FROM_YCC.to(stylized)
    y = torch.einsum("ij,njhw->nihw", to_ycc[:1], stylized)
    cbcr = torch.einsum("ij,njhw->nihw", to_ycc[1:], original)
    return torch.einsum("ij,njhw->nihw", from_ycc, torch.cat([y, cbcr], 1)).clamp(0, 1)


def compute_dtype(precision: Precision, device: torch.device) -> torch.dtype:
    """The autocast dtype for ``precision`` on ``device``; fp16 is refused off CUDA."""
    precision = Precision(precision)
    if precision is Precision.AUTO:
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    if precision is Precision.FP16 and device.type != "cuda":
        raise ConfigError(f"precision fp16 needs a CUDA GPU (half-precision kernels on {device.type} are slow "
                          f"or missing); use --precision bf16 or fp32")
    return _DTYPES[precision]


def split_alpha(image: Image.Image, max_size: int | None = None) -> tuple[Image.Image, Image.Image | None]:
    """8-bit RGB and the alpha channel (None when opaque) of any Pillow mode, downscaled to
    ``max_size``. Palette and greyscale images with a transparent colour keep it as alpha."""
    alpha = None
    if image.mode in ("RGBA", "LA", "PA") or (image.mode in ("P", "L", "RGB") and "transparency" in image.info):
        image = image.convert("RGBA")
        alpha = image.getchannel("A")
    rgb = _to_rgb(image)
    if max_size and max(rgb.size) > max_size:
        rgb = resize_longer(rgb, max_size)
        alpha = alpha.resize(rgb.size, Image.Resampling.LANCZOS) if alpha is not None else None
    return rgb, alpha


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
        self.dtype = compute_dtype(self.config.precision, self.device)
        self.generator = generator.to(self.device, memory_format=memory_format(self.device)).eval()
        # Same outputs (within float rounding), ~1.4x faster and ~3x less peak memory untiled:
        # the upsample-then-conv layers run as sub-pixel convolutions (docs/performance.md).
        self.fast = FastGenerator.from_generator(self.generator)
        self.info = info
        self._tiler: GlobalStatsGenerator | None = None

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

    def _autocast(self) -> AbstractContextManager[object]:
        if self.dtype == torch.float32:
            return nullcontext()
        return torch.autocast(self.device.type, dtype=self.dtype)

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
            if self._tiler is None:
                self._tiler = GlobalStatsGenerator(self.generator)
            return tiled_forward(self._tiler, x, tile, self.device, self._autocast, self.config.stats_size,
                                 stats=self.config.tile_stats)
        with self._autocast():
            return self.fast(x.to(self.device, memory_format=memory_format(self.device))).float()

    @torch.inference_mode()
    def stylize_tensor(self, batch: torch.Tensor) -> torch.Tensor:
        """(N, 3, H, W) in [0, 1] -> stylized batch of the same size, strength and colour applied."""
        if batch.ndim != 4 or batch.shape[1] != 3:
            raise ImageError(f"expected a (N, 3, H, W) tensor, got shape {tuple(batch.shape)}")
        if self.config.strength == 0.0:
            return batch.clone()
        x = batch.float()
        out = self._network(x).clamp_(0, 1)
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

    def _call_array(self, array):  # numpy.ndarray -> numpy.ndarray of the same dtype kind
        if array.ndim != 3 or array.shape[2] != 3:
            raise ImageError(f"expected an (H, W, 3) array, got shape {tuple(array.shape)}")
        out = self(torch.from_numpy(array.copy()).permute(2, 0, 1))
        if array.dtype.kind == "f":
            return out.permute(1, 2, 0).numpy().astype(array.dtype)
        return out.permute(1, 2, 0).contiguous().numpy()


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
