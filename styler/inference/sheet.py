"""Contact sheet: one photo in every available style, labelled, so a style can be picked by eye."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Sequence

import torch
from PIL import Image, ImageDraw, ImageFont

from styler.config import ApplyConfig
from styler.errors import StylerError, WeightsError
from styler.inference.stylizer import Stylizer
from styler.io.images import split_alpha
from styler.io.weights import list_styles, resolve_weights, short_reason
from styler.nn.generator import load_generator

LABEL_HEIGHT = 22
GAP = 8


def _chosen(weights_dir: Path, names: Sequence[str] | None) -> list[tuple[Path, WeightsError | None]]:
    """(file, error reading its header) of each style on the sheet: those named, found up front so
    that a wrong name stops before any work, or every style a name can pick."""
    if names is not None:
        return [(resolve_weights(name, weights_dir), None) for name in names]
    return [(style.path, style.error) for style in list_styles(weights_dir) if not style.shadowed]


def stylize_all(image: Image.Image, weights_dir: Path, device: torch.device, cell: int,
                config: ApplyConfig | None = None, names: Sequence[str] | None = None,
                ) -> tuple[list[tuple[str, Image.Image]], list[tuple[str, str]]]:
    """(label, image) for the original and every readable style (``weights_dir``'s, ``./weights``'
    and the bundled ones; or the styles ``names`` picks, in that order), with the photo's longer
    side at ``cell``; plus (file, reason) for every style that failed."""
    config = config or ApplyConfig()
    rgb, _ = split_alpha(image, cell)  # the sheet is opaque; alpha would only hide the style
    entries: list[tuple[str, Image.Image]] = [("original", rgb)]
    failures: list[tuple[str, str]] = []
    for path, error in _chosen(weights_dir, names):
        if error is not None:
            failures.append((path.name, short_reason(error, path)))
            continue
        try:
            generator, info = load_generator(path, device)
            entries.append((path.stem, Stylizer(generator, info, device, config)(rgb)))
        except StylerError as exc:
            failures.append((path.name, short_reason(exc, path)))
    return entries, failures


def render_sheet(entries: list[tuple[str, Image.Image]], columns: int | None = None) -> Image.Image:
    """Lay the images out in a grid (about square), each with its label underneath."""
    if not entries:
        raise StylerError("nothing to put on the contact sheet")
    columns = columns or math.ceil(math.sqrt(len(entries)))
    rows = math.ceil(len(entries) / columns)
    cell_w = max(im.width for _, im in entries)
    cell_h = max(im.height for _, im in entries) + LABEL_HEIGHT
    sheet = Image.new("RGB", (columns * cell_w + (columns + 1) * GAP, rows * cell_h + (rows + 1) * GAP), "white")
    draw = ImageDraw.Draw(sheet)
    font = ImageFont.load_default()
    for index, (label, image) in enumerate(entries):
        row, col = divmod(index, columns)
        x, y = GAP + col * (cell_w + GAP), GAP + row * (cell_h + GAP)
        sheet.paste(image, (x + (cell_w - image.width) // 2, y))
        draw.text((x + 2, y + image.height + 4), label, fill="black", font=font)
    return sheet
