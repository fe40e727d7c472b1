"""The pictures of the page's Try part, made by the library the CLI uses: the grid by
:func:`styler.inference.sheet.stylize_all` (as ``styler sheet``), every other result by a
:class:`styler.inference.stylizer.Stylizer` with the sliders' :class:`styler.config.ApplyConfig`."""

from __future__ import annotations

import base64
import io
import threading
import zipfile
from pathlib import Path
from typing import Sequence

import torch
from PIL import Image

from styler.config import ApplyConfig
from styler.errors import StylerError
from styler.inference.sheet import stylize_all
from styler.inference.stylizer import Stylizer
from styler.io.weights import Style, list_styles, short_reason
from styler.nn.generator import load_generator
from styler.ui.uploads import Upload, safe_name, safe_stem


def encode(image: Image.Image, lossless: bool = False) -> tuple[bytes, str]:
    """(bytes, media type): PNG when asked or when the image has alpha, else JPEG (smaller, faster)."""
    buffer = io.BytesIO()
    if lossless or image.mode == "RGBA":
        image.save(buffer, format="PNG")
        return buffer.getvalue(), "image/png"
    image.convert("RGB").save(buffer, format="JPEG", quality=90)
    return buffer.getvalue(), "image/jpeg"


def data_url(image: Image.Image) -> str:
    data, media = encode(image)
    return f"data:{media};base64,{base64.b64encode(data).decode()}"


class Renderer:
    """Stylizes uploads with the styles of a weights folder (and the bundled ones). One picture
    at a time: memory stays bounded and the cores are not split between half-done requests."""

    def __init__(self, weights_dir: Path, device: torch.device, grid_size: int) -> None:
        self.weights_dir, self.device, self.grid_size = Path(weights_dir), device, grid_size
        self._lock = threading.Lock()
        self._loaded: dict[Path, tuple[int, object, object]] = {}  # path -> (mtime_ns, generator, info)

    def usable(self) -> list[Style]:
        """The styles the grid shows, as ``styler sheet`` picks them."""
        return [s for s in list_styles(self.weights_dir) if not s.shadowed and s.error is None]

    def find(self, name: str) -> Style | None:
        return next((s for s in self.usable() if s.name == name), None)

    def grid(self, upload: Upload) -> tuple[list[dict[str, str]], list[dict[str, str]]]:
        """The upload in every style at the grid's size: cells (style, data URL) and failures."""
        with self._lock:
            entries, failures = stylize_all(upload.preview, self.weights_dir, self.device, self.grid_size)
        cells = [{"style": label, "src": data_url(image)} for label, image in entries[1:]]
        return cells, [{"style": name, "reason": reason} for name, reason in failures]

    def _stylizer(self, style: Style, config: ApplyConfig) -> Stylizer:
        mtime = style.path.stat().st_mtime_ns
        cached = self._loaded.get(style.path)
        if cached is None or cached[0] != mtime:
            cached = (mtime, *load_generator(style.path, self.device))
            self._loaded[style.path] = cached
        return Stylizer(cached[1], cached[2], self.device, config)

    def render(self, upload: Upload, style: Style, config: ApplyConfig, full: bool) -> Image.Image:
        """The upload in ``style``: the large preview, or (``full``) from the file at full resolution."""
        source = upload.full() if full else upload.preview
        with self._lock:
            return self._stylizer(style, config)(source)

    def archive(self, uploads: Sequence[Upload], config: ApplyConfig) -> bytes:
        """A zip of every upload in every style at full resolution (PNG); a style that fails is
        named with its reason in ``skipped.txt`` inside."""
        buffer, skipped = io.BytesIO(), []
        styles = self.usable()
        with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:
            for index, upload in enumerate(uploads, 1):
                source = upload.full()
                for style in styles:
                    try:
                        with self._lock:
                            image = self._stylizer(style, config)(source)
                    except StylerError as exc:
                        skipped.append(f"{upload.label} in {style.name}: {short_reason(exc, style.path)}\n")
                        continue
                    name = f"{index:02d}_{safe_stem(upload.label)}_{safe_name(style.name)}.png"
                    archive.writestr(name, encode(image, lossless=True)[0])
            if skipped:
                archive.writestr("skipped.txt", "".join(skipped))
        return buffer.getvalue()
