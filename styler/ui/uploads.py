"""Images sent by the page: decoded in memory as the CLI decodes files, under Pillow's pixel limit
(the one ``--max-pixels`` sets), and kept in memory under ids the server makes. A browser's file name is a
label for the page and for download names, never a path; nothing is written here."""

from __future__ import annotations

import io
import re
import secrets
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from styler.config import IMAGE_EXTENSIONS
from styler.io.files import atomic_path
from styler.io.images import decode_bytes, split_alpha

# Extensions for Pillow's format names, so a training photo keeps its bytes and still reads as
# an image by its name; other formats are written as PNG.
_EXTENSIONS = {"JPEG": ".jpg", "MPO": ".jpg", "PNG": ".png", "WEBP": ".webp", "BMP": ".bmp", "TIFF": ".tif",
               "GIF": ".gif"}


def label_of(name: str | None) -> str:
    """What the page shows for a browser's file name: its last part, printable, at most 80 characters."""
    last = re.split(r"[\\/]", name or "")[-1]
    printable = "".join(c for c in last if c.isprintable()).strip()
    return printable[:80] or "upload"


def safe_name(text: str) -> str:
    """A part of a download's file name: letters, digits, '-' and '_' only."""
    return re.sub(r"[^A-Za-z0-9_-]+", "_", text).strip("_")[:40] or "photo"


def safe_stem(label: str) -> str:
    """:func:`safe_name` of a file name without its extension."""
    return safe_name(label.rsplit(".", 1)[0])


def image_format(data: bytes) -> str | None:
    """Pillow's name for the format of an image already decoded once (header only)."""
    with Image.open(io.BytesIO(data)) as opened:
        return opened.format


@dataclass(frozen=True)
class Upload:
    id: str
    label: str
    data: bytes  # the file as sent: full-resolution results and training inputs start from it
    format: str | None
    preview: Image.Image  # RGB or RGBA, the longer side at most the page's large view
    size: tuple[int, int]

    @property
    def cost(self) -> int:
        """Bytes of memory it holds, about."""
        return len(self.data) + self.preview.width * self.preview.height * 4

    def full(self) -> Image.Image:
        return decode_bytes(self.data, self.label)

    def write_to(self, folder: Path, stem: str) -> Path:
        """Write the image into ``folder`` as ``stem`` plus the extension of its format (the
        name is the caller's, never the browser's)."""
        extension = _EXTENSIONS.get(self.format or "")
        path = Path(folder) / f"{stem}{extension or '.png'}"
        with atomic_path(path) as tmp:
            if extension in IMAGE_EXTENSIONS:
                Path(tmp).write_bytes(self.data)
            else:
                self.full().save(tmp, format="PNG")
        return path


class UploadStore:
    """Uploads by id, the oldest forgotten once they hold more than ``memory_bytes``."""

    def __init__(self, memory_bytes: int, preview_size: int) -> None:
        self.memory_bytes, self.preview_size = memory_bytes, preview_size
        self._items: OrderedDict[str, Upload] = OrderedDict()
        self._lock = threading.Lock()

    def add(self, data: bytes, name: str | None) -> Upload:
        label = label_of(name)
        image = decode_bytes(data, label)
        preview, alpha = split_alpha(image, self.preview_size)  # any mode to 8-bit RGB, alpha kept
        if alpha is not None:
            preview.putalpha(alpha)
        upload = Upload(secrets.token_hex(8), label, data, image_format(data), preview, image.size)
        with self._lock:
            self._items[upload.id] = upload
            while sum(item.cost for item in self._items.values()) > self.memory_bytes and len(self._items) > 1:
                self._items.popitem(last=False)
        return upload

    def get(self, upload_id: str) -> Upload | None:
        with self._lock:
            return self._items.get(upload_id)
