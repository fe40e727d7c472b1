"""Single-pass stylization: the :class:`Stylizer` API and folder conversion used by the CLI."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence, overload

import torch
from PIL import Image

from styler.checkpoint import WeightsInfo, load_generator, resolve_weights
from styler.config import ApplyConfig, DeviceChoice
from styler.device import autocast, memory_format, resolve_device
from styler.errors import ImageError, StylerError
from styler.images import find_images, is_image_path, open_image, pil_to_tensor, resize_longer, save_image, \
    tensor_to_pil, _to_rgb
from styler.models import Generator

# ITU-R BT.601 RGB <-> YCbCr (as JPEG uses), for colour preservation.
_TO_YCC = torch.tensor([[0.299, 0.587, 0.114], [-0.168736, -0.331264, 0.5], [0.5, -0.418688, -0.081312]])
_FROM_YCC = torch.linalg.inv(_TO_YCC)


def preserve_color(stylized: torch.Tensor, original: torch.Tensor) -> torch.Tensor:
    """Luminance of ``stylized`` with the chroma (Cb, Cr) of ``original``; (N, 3, H, W) in [0, 1]."""
    to_ycc, from_ycc = _TO_YCC.to(stylized), _FROM_YCC.to(stylized)
    y = torch.einsum("ij,njhw->nihw", to_ycc[:1], stylized)
    cbcr = torch.einsum("ij,njhw->nihw", to_ycc[1:], original)
    return torch.einsum("ij,njhw->nihw", from_ycc, torch.cat([y, cbcr], 1)).clamp(0, 1)


class Stylizer:
    """A loaded style. ``Stylizer.load("starry")(pil_image)`` returns the stylized image.

    Accepts a PIL image (any mode; alpha is kept), a (3, H, W) tensor or a (N, 3, H, W) batch in
    [0, 1], and returns the same kind.
    """

    def __init__(self, generator: Generator, info: WeightsInfo | None = None,
                 device: torch.device | str = "cpu", config: ApplyConfig | None = None) -> None:
        self.device = torch.device(device)
        self.generator = generator.to(self.device, memory_format=memory_format(self.device)).eval()
        self.info = info
        self.config = config or ApplyConfig()

    @classmethod
    def load(cls, style: str | Path, *, weights_dir: Path | None = None,
             device: DeviceChoice | str = DeviceChoice.AUTO, config: ApplyConfig | None = None) -> "Stylizer":
        """Load a style by name (from the weights directory) or by path to a ``.safetensors``."""
        path = resolve_weights(str(style), weights_dir)
        dev = resolve_device(device)
        generator, info = load_generator(path, dev)
        return cls(generator, info, dev, config)

    @property
    def name(self) -> str:
        return self.info.name if self.info else "styled"

    @torch.inference_mode()
    def stylize_tensor(self, batch: torch.Tensor) -> torch.Tensor:
        """(N, 3, H, W) in [0, 1] -> stylized batch of the same size, strength and colour applied."""
        if batch.ndim != 4 or batch.shape[1] != 3:
            raise ImageError(f"expected a (N, 3, H, W) tensor, got shape {tuple(batch.shape)}")
        if self.config.strength == 0.0:
            return batch.clone()
        x = batch.to(self.device, torch.float32, memory_format=memory_format(self.device))
        with autocast(self.device):
            out = self.generator(x)
        out = out.float().clamp(0, 1)
        if self.config.preserve_color:
            out = preserve_color(out, x)
        if self.config.strength < 1.0:
            out = torch.lerp(x, out, self.config.strength)
        return out.to(batch.device)

    @overload
    def __call__(self, image: Image.Image) -> Image.Image: ...
    @overload
    def __call__(self, image: torch.Tensor) -> torch.Tensor: ...

    def __call__(self, image):
        if isinstance(image, torch.Tensor):
            return self.stylize_tensor(image[None])[0] if image.ndim == 3 else self.stylize_tensor(image)
        if not isinstance(image, Image.Image):
            raise ImageError(f"expected a PIL image or a tensor, got {type(image).__name__}")
        alpha = image.getchannel("A") if image.mode in ("RGBA", "LA", "PA") else None
        rgb = _to_rgb(image.convert("RGBA") if alpha is not None else image)
        if self.config.max_size and max(rgb.size) > self.config.max_size:
            rgb = resize_longer(rgb, self.config.max_size)
            alpha = alpha.resize(rgb.size, Image.Resampling.LANCZOS) if alpha is not None else None
        out = tensor_to_pil(self.stylize_tensor(pil_to_tensor(rgb)[None]))
        if alpha is not None:
            out.putalpha(alpha)
        return out


@dataclass
class ApplySummary:
    done: list[Path] = field(default_factory=list)
    failed: list[tuple[Path, str]] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def images_per_s(self) -> float:
        return len(self.done) / self.seconds if self.seconds > 0 else 0.0


def plan_outputs(inputs: Sequence[Path], output: Path | None, style_name: str
                 ) -> tuple[list[tuple[Path, Path]], list[tuple[Path, str]]]:
    """Pair every input image with its output path; bad inputs are returned as failures.

    One image: ``output`` or ``<stem>_<style><ext>`` beside it. A folder: every image below it,
    under ``output`` (default ``<folder>_<style>``) with the same relative paths. Several inputs:
    ``output`` is a folder.
    """
    pairs: list[tuple[Path, Path]] = []
    failures: list[tuple[Path, str]] = []
    single_file = len(inputs) == 1 and Path(inputs[0]).is_file()
    for src in map(Path, inputs):
        if src.is_dir():
            root = Path(output) if output else src.parent / f"{src.name}_{style_name}"
            pairs += [(p, root / p.relative_to(src)) for p in find_images(src)]
        elif src.is_file():
            if single_file and output and not Path(output).is_dir():
                dst = Path(output)
            else:
                folder = Path(output) if output else src.parent
                dst = folder / f"{src.stem}_{style_name}{src.suffix}" if not output else folder / src.name
            if not is_image_path(dst):
                failures.append((src, f"output {dst} has no image extension"))
                continue
            pairs.append((src, dst))
        else:
            failures.append((src, "no such file or directory"))
    kept = []
    for src, dst in pairs:
        if dst.resolve() == src.resolve():
            failures.append((src, "output path is the input path; refusing to overwrite the input"))
        else:
            kept.append((src, dst))
    return kept, failures


def stylize_file(stylizer: Stylizer, src: Path, dst: Path) -> None:
    """Read, stylize and atomically write one image, keeping EXIF (orientation reset) and ICC."""
    image = open_image(src)
    out = stylizer(image)
    if out.mode == "RGBA" and dst.suffix.lower() in (".jpg", ".jpeg", ".bmp"):
        out = out.convert("RGB")
    exif = image.getexif()
    save_image(out, dst, exif=exif.tobytes() if len(exif) else None,
               icc_profile=image.info.get("icc_profile"))


def apply_to_paths(stylizer: Stylizer, pairs: Sequence[tuple[Path, Path]],
                   on_image: Callable[[Path, str | None], None] | None = None) -> ApplySummary:
    """Stylize every pair; one failing image is recorded and the rest still run."""
    summary, start = ApplySummary(), time.perf_counter()
    for src, dst in pairs:
        error: str | None = None
        try:
            stylize_file(stylizer, src, dst)
            summary.done.append(dst)
        except StylerError as exc:
            error = str(exc)
            summary.failed.append((src, error))
        except torch.OutOfMemoryError as exc:
            error = f"{src}: out of memory ({exc}); try --max-size"
            summary.failed.append((src, error))
        if on_image is not None:
            on_image(src, error)
    summary.seconds = time.perf_counter() - start
    return summary
