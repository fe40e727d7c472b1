"""Animated GIF, WebP and PNG (APNG): every frame read, and written back with its timing.

Pillow composes each frame over the previous ones as the file's disposal rules say, so the
network sees the full picture of every frame. Each stylized frame is a full frame again; the
per-frame durations, the loop count and (for GIF) the disposal methods are written back as they
were. A static GIF is an ordinary image (:mod:`styler.inference.pipeline`). The frames of one
animation are held in memory (animated images are small); the output is written atomically.
Stylizing them: :func:`styler.inference.video.stylize_animation`.
"""

from __future__ import annotations

import warnings

from pathlib import Path
from typing import Any

from PIL import Image

from styler.errors import VideoError
from styler.io.files import atomic_path
from styler.io.images import open_image

_WRITERS = {".gif": "GIF", ".webp": "WEBP", ".png": "PNG"}
_ANIMATED_INPUTS = (".gif", ".webp", ".png", ".apng")


def is_animated(path: Path) -> bool:
    """True for a GIF, WebP or PNG file with more than one frame (unreadable files: False, so
    the image pipeline reports them as for any image)."""
    if Path(path).suffix.lower() not in _ANIMATED_INPUTS:
        return False
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                return bool(getattr(image, "is_animated", False))
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError):
        return False  # a huge still image: the image pipeline applies --max-size / --max-pixels


def read_animation(src: Path) -> tuple[list[Image.Image], dict[str, Any]]:
    """Every composed frame (RGB or RGBA) and what the writer needs to keep the timing."""
    open_image(src)  # the image pipeline's one-line errors for unreadable files
    frames, durations, disposal = [], [], []
    try:
        with Image.open(src) as image:
            info = {"loop": image.info.get("loop"), "format": image.format}
            for index in range(image.n_frames):
                image.seek(index)
                image.load()  # WebP sets a frame's duration only once it is decoded
                durations.append(int(image.info.get("duration", 100)))
                disposal.append(getattr(image, "disposal_method", 0))
                clear = image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info
                frames.append(image.convert("RGBA" if clear else "RGB"))
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise VideoError(f"{src}: cannot decode animation frame {len(frames)} ({exc})") from exc
    info.update(duration=durations, disposal=disposal)
    return frames, info


def animation_format(dst: Path) -> str:
    """Pillow's format for an animation written to ``dst``; other extensions are an error."""
    fmt = _WRITERS.get(Path(dst).suffix.lower())
    if fmt is None:
        raise VideoError(f"{dst}: write an animation as one of {', '.join(sorted(_WRITERS))}")
    return fmt


def save_animation(frames: list[Image.Image], info: dict[str, Any], dst: Path, quality: int) -> None:
    """``frames`` written atomically to ``dst`` with the timing ``info`` that :func:`read_animation` gave."""
    fmt = animation_format(dst)
    options: dict[str, Any] = {"save_all": True, "append_images": frames[1:], "duration": info["duration"]}
    if info["loop"] is not None:
        options["loop"] = info["loop"]
    if fmt == "GIF":
        options["disposal"] = info["disposal"]
        options["optimize"] = False
    if fmt == "WEBP":
        options["quality"] = quality
    try:
        with atomic_path(dst) as tmp:
            frames[0].save(tmp, format=fmt, **options)
    except OSError as exc:
        raise VideoError(f"{dst}: cannot write ({exc.strerror or exc})") from exc
