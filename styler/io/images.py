"""Image discovery, decoding, conversion, crop geometry and atomic writing.

The training data stream built on these lives in :mod:`styler.training.data`.

Everything a user hands us passes through here, so every failure becomes an
:class:`ImageError` naming the file.
"""

from __future__ import annotations

import contextlib
import io
import os
import threading
import warnings
from pathlib import Path
from typing import Callable, Iterator

import torch
from PIL import Image, ImageOps, UnidentifiedImageError
from torchvision.transforms.v2 import InterpolationMode
from torchvision.transforms.v2 import functional as TF

from styler._version import __version__
from styler.config import HEIF_EXTENSIONS, IMAGE_EXTENSIONS
from styler.errors import DataError, ImageError
from styler.io.files import atomic_path

# ITU-R BT.601 weights of R, G and B in luma (as JPEG's YCbCr uses): the one place for them.
LUMA = (0.299, 0.587, 0.114)

_SAVE_FORMATS = {".jpg": "JPEG", ".jpeg": "JPEG", ".png": "PNG", ".webp": "WEBP", ".bmp": "BMP",
                 ".tif": "TIFF", ".tiff": "TIFF", ".gif": "GIF"}


def is_image_path(path: Path) -> bool:
    """An extension styler reads as a still image (HEIC/HEIF through the ``heif`` extra)."""
    return path.suffix.lower() in IMAGE_EXTENSIONS or is_heif_path(path)


def is_heif_path(path: Path) -> bool:
    return Path(path).suffix.lower() in HEIF_EXTENSIONS


def can_save(path: Path) -> bool:
    """An extension :func:`save_image` writes (HEIC/HEIF are read, never written)."""
    return Path(path).suffix.lower() in _SAVE_FORMATS


_HEIF_LOCK = threading.Lock()
_heif_registered = False


def require_heif(path: Path | None = None) -> None:
    """Register pillow-heif's opener with Pillow, once, on the first HEIC/HEIF file (a run without
    one does not pay for importing it). Missing: one line naming the extra (and the file)."""
    global _heif_registered
    with _HEIF_LOCK:
        if _heif_registered:
            return
        try:
            import pillow_heif
        except ImportError as exc:
            where = f"{path}: " if path is not None else ""
            raise ImageError(f"{where}HEIC/HEIF images need pillow-heif: pip install 'styler[heif]'") from exc
        pillow_heif.register_heif_opener()
        _heif_registered = True


# Outputs carry "styler <version> (<settings>)" in the EXIF Software tag, so that a later run over
# the same folder does not take them for photos, and a rerun can tell whether an existing output
# is the same work (same style and settings) or is to be redone. JPEG, PNG, WebP and TIFF hold
# EXIF; BMP and GIF do not.
_SOFTWARE_TAG = 0x0131
_EXIF_FORMATS = ("JPEG", "WEBP", "PNG", "TIFF")
_OUTPUT_MARK = "styler"


def mark_output(exif: bytes | None, settings: str = "") -> bytes:
    """The input's EXIF (if any) with the Software tag saying styler wrote the file, and with
    which ``settings`` (a line that describes the work, compared as text by later runs)."""
    data = Image.Exif()
    if exif:
        data.load(exif)
    data[_SOFTWARE_TAG] = f"{_OUTPUT_MARK} {__version__}" + (f" ({settings})" if settings else "")
    return data.tobytes()


def output_settings(path: Path) -> str | None:
    """The settings an earlier styler run recorded in ``path`` ("" when it recorded none), or
    None when styler did not write it. Reads the header only; a file that cannot be read is not
    styler's (decoding it later reports why)."""
    try:
        if is_heif_path(path):
            return None  # styler never writes HEIF
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # a huge image, corrupt EXIF: decoding it says what is wrong
            with Image.open(path) as img:
                software = str(img.getexif().get(_SOFTWARE_TAG, ""))
    except (OSError, UnidentifiedImageError, SyntaxError, ValueError, Image.DecompressionBombError):
        return None
    if not software.startswith(f"{_OUTPUT_MARK} "):
        return None
    _, _, rest = software.partition(" (")
    return rest[:-1] if rest.endswith(")") else ""


def holds_mark(path: Path) -> bool:
    """Whether styler's outputs of this type carry the mark (the formats that hold EXIF)."""
    return _SAVE_FORMATS.get(Path(path).suffix.lower()) in _EXIF_FORMATS


def is_styler_output(path: Path) -> bool:
    """Whether ``path`` is an image an earlier styler run wrote (reads the header only)."""
    return output_settings(path) is not None


def find_images(root: Path, recursive: bool = True, wanted: Callable[[Path], bool] = is_image_path) -> list[Path]:
    """Image files (or other ``wanted`` files) below ``root``, sorted; extensions match
    case-insensitively.

    ``os.walk`` does not follow directory symlinks, so symlink loops cannot recurse forever.
    """
    root = Path(root)
    if not root.exists():
        raise DataError(f"no such directory: {root}")
    if not root.is_dir():
        raise DataError(f"not a directory: {root}")
    found: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        found += [Path(dirpath) / name for name in sorted(filenames) if wanted(Path(name))]
        if not recursive:
            break
    return found


def _to_rgb(image: Image.Image, background: tuple[int, int, int] = (255, 255, 255)) -> Image.Image:
    """Any Pillow mode (L, LA, P, CMYK, I;16, RGBA, ...) to 8-bit RGB; alpha over ``background``."""
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        # 16/32-bit greyscale: scale to 8 bits instead of clipping everything to white.
        image = image.point(lambda v: v / 256).convert("L")
    if image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA"):
        image = image.convert("RGBA")
        canvas = Image.new("RGB", image.size, background)
        canvas.paste(image, mask=image.getchannel("A"))
        return canvas
    return image.convert("RGB")


_OPEN_LOCK = threading.Lock()  # guards the process-wide pixel limit while one file lifts it


@contextlib.contextmanager
def max_image_pixels(limit: int | None) -> Iterator[None]:
    """Pillow's decompression-bomb limit set to ``limit`` for the block and restored after: it is
    process-wide, and a library user's own setting must survive a run. None leaves Pillow's."""
    if limit is None:
        yield
        return
    with _OPEN_LOCK:
        before, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, limit
    try:
        yield
    finally:
        with _OPEN_LOCK:
            Image.MAX_IMAGE_PIXELS = before


def _open(path: Path, max_size: int | None) -> Image.Image:
    """``Image.open``, with the decompression-bomb limit lifted for this file when ``max_size``
    keeps the work under it (only the input is huge); JPEGs are then decoded at a reduced scale."""
    if is_heif_path(path):
        require_heif(path)
    limit = Image.MAX_IMAGE_PIXELS
    if not max_size or limit is None or max_size * max_size > limit:
        return Image.open(path)
    with _OPEN_LOCK:  # header only: cheap, and no other open runs without the limit meanwhile
        Image.MAX_IMAGE_PIXELS = None
        try:
            img = Image.open(path)
        finally:
            Image.MAX_IMAGE_PIXELS = limit
    if img.width * img.height > limit:
        img.draft("RGB", (max_size, max_size))  # JPEG: decode at 1/2, 1/4 or 1/8 scale
    return img


def open_image(path: Path, max_size: int | None = None,
               before_decode: Callable[[Image.Image], None] | None = None) -> Image.Image:
    """Decode ``path`` fully, EXIF orientation applied, in its own mode. With ``max_size`` (the
    caller will downscale to it), an image over the pixel limit is accepted if the work is not.
    ``before_decode`` gets the opened image before its pixels are read, e.g. to set a JPEG draft."""
    path = Path(path)
    return _decode(lambda: _open(path, max_size), path, before_decode)


def decode_bytes(data: bytes, name: str) -> Image.Image:
    """An image sent as bytes (an upload), decoded as :func:`open_image` decodes a file, under the
    pixel limit; errors name it ``name``."""
    return _decode(lambda: Image.open(io.BytesIO(data)), name)


def _decode(opened: Callable[[], Image.Image], name: object,
            before_decode: Callable[[Image.Image], None] | None = None) -> Image.Image:
    """Every pixel of the image ``opened()`` opens (a truncated file fails here, not later), EXIF
    orientation applied; each failure an ImageError naming ``name``."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with opened() as img:
                if before_decode is not None:
                    before_decode(img)
                img.load()
                image = ImageOps.exif_transpose(img)
    except FileNotFoundError as exc:
        raise ImageError(f"{name}: no such file") from exc
    except IsADirectoryError as exc:
        raise ImageError(f"{name}: is a directory, not an image") from exc
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageError(f"{name}: image is too large ({exc})") from exc
    except UnidentifiedImageError as exc:
        raise ImageError(f"{name}: not an image Pillow can read") from exc
    except (OSError, SyntaxError, ValueError) as exc:
        raise ImageError(f"{name}: cannot decode image ({exc})") from exc
    if image.width < 1 or image.height < 1:
        raise ImageError(f"{name}: image has no pixels")
    return image


def load_rgb(path: Path, before_decode: Callable[[Image.Image], None] | None = None) -> Image.Image:
    return _to_rgb(open_image(path, before_decode=before_decode))


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
        alpha = resize_longer(alpha, max_size) if alpha is not None else None
    return rgb, alpha


def luma(x: torch.Tensor) -> torch.Tensor:
    """(N, 3, H, W) RGB -> (N, 1, H, W) luma (:data:`LUMA`), in ``x``'s dtype and device."""
    weights = torch.tensor(LUMA, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    return (x * weights).sum(1, keepdim=True)


def pil_to_tensor(image: Image.Image) -> torch.Tensor:
    """RGB PIL image -> float tensor (3, H, W) in [0, 1]."""
    # Divided by 255 (not to_dtype's multiply by 1/255, which differs in the last bit), as every
    # uint8 batch styler scales, so a photo gives the same floats on every path.
    return TF.pil_to_tensor(image).float().div_(255.0)


def tensor_to_pil(tensor: torch.Tensor) -> Image.Image:
    """Float tensor (3, H, W) or (1, 3, H, W) in [0, 1] (clamped) -> RGB PIL image, each value
    rounded to the nearest of 0..255."""
    if tensor.ndim == 4:
        tensor = tensor[0]
    return TF.to_pil_image(tensor.detach().float().clamp(0, 1).mul(255).round().to(torch.uint8).cpu())


def _scaled(height: int, width: int, scale: float) -> list[int]:
    """``[height, width]`` times ``scale``, rounded, at least 1 pixel each."""
    return [max(1, round(height * scale)), max(1, round(width * scale))]


def resize_longer(image: Image.Image, size: int) -> Image.Image:
    """Resize (Lanczos) so the longer side is ``size``, up or down, keeping the aspect ratio."""
    return TF.resize(image, _scaled(image.height, image.width, size / max(image.size)),
                     interpolation=InterpolationMode.LANCZOS)


def load_style_image(path: Path, size: int) -> torch.Tensor:
    """The style painting as a (1, 3, H, W) tensor with its longer side at ``size``."""
    image = load_rgb(path)
    if min(image.size) < 16:
        raise ImageError(f"{path}: style image is {image.width}x{image.height}; it needs at least "
                         f"16 pixels on each side (256 or more gives good results)")
    return pil_to_tensor(resize_longer(image, size)).unsqueeze(0)


def save_image(image: Image.Image, path: Path, quality: int = 95, exif: bytes | None = None,
               icc_profile: bytes | None = None) -> None:
    """Write atomically: a temp file in the target folder, then rename over the target."""
    path = Path(path)
    fmt = _SAVE_FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise ImageError(f"{path}: unsupported output format {path.suffix!r} "
                         f"(use one of {', '.join(sorted(_SAVE_FORMATS))})")
    kwargs: dict[str, object] = {}
    if fmt in ("JPEG", "WEBP"):
        kwargs["quality"] = quality
    if exif and fmt in _EXIF_FORMATS:
        kwargs["exif"] = exif
    if icc_profile and fmt in ("JPEG", "WEBP", "PNG", "TIFF"):
        kwargs["icc_profile"] = icc_profile
    try:
        with atomic_path(path) as tmp, open(tmp, "wb") as fh:
            image.save(fh, format=fmt, **kwargs)
    except OSError as exc:
        raise ImageError(f"{path}: cannot write ({exc.strerror or exc})") from exc


def resized_crop_params(height: int, width: int, generator: torch.Generator,
                        scale: tuple[float, float] = (0.35, 1.0),
                        ratio: tuple[float, float] = (0.8, 1.25)) -> tuple[int, int, int, int]:
    """torchvision's RandomResizedCrop.get_params, drawing from ``generator``."""
    area = height * width
    log_ratio = torch.log(torch.tensor(ratio))
    for _ in range(10):
        target = area * torch.empty(1).uniform_(scale[0], scale[1], generator=generator).item()
        aspect = torch.exp(torch.empty(1).uniform_(log_ratio[0].item(), log_ratio[1].item(),
                                                   generator=generator)).item()
        w = int(round((target * aspect) ** 0.5))
        h = int(round((target / aspect) ** 0.5))
        if 0 < w <= width and 0 < h <= height:
            top = int(torch.randint(0, height - h + 1, (1,), generator=generator))
            left = int(torch.randint(0, width - w + 1, (1,), generator=generator))
            return top, left, h, w
    side = min(height, width)  # fallback: the central square
    return (height - side) // 2, (width - side) // 2, side, side


def center_crop(tensor: torch.Tensor, size: int) -> torch.Tensor:
    """Resize (3, H, W) (bilinear, antialiased) so the shorter side is ``size``, then take the
    central square."""
    height, width = tensor.shape[-2:]
    resized = TF.resize(tensor, _scaled(height, width, size / min(height, width)), antialias=True)
    return TF.center_crop(resized, [size, size])
