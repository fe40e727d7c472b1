"""Pictures of a run drawn with Pillow alone: preview grids, the contact sheet, the loss curve."""

from __future__ import annotations

import math
from typing import Any, Sequence

import torch
from PIL import Image, ImageDraw

from styler.io.images import tensor_to_pil

_BACKGROUND = (255, 255, 255)
_GAP = 4


def pairs_grid(inputs: torch.Tensor, outputs: torch.Tensor, pairs_per_row: int = 8) -> Image.Image:
    """Each input with its stylized output to its right, ``pairs_per_row`` pairs a row."""
    n, _, h, w = inputs.shape
    cols = min(n, pairs_per_row)
    rows = math.ceil(n / cols)
    sheet = Image.new("RGB", (cols * (2 * w + 2 * _GAP), rows * (h + _GAP)), _BACKGROUND)
    for i in range(n):
        x, y = (i % cols) * (2 * w + 2 * _GAP), (i // cols) * (h + _GAP)
        sheet.paste(tensor_to_pil(inputs[i]), (x, y))
        sheet.paste(tensor_to_pil(outputs[i]), (x + w, y))
    return sheet


def _series(records: Sequence[dict[str, Any]], key: str) -> list[tuple[float, float]]:
    return [(float(r["step"]), float(r[key])) for r in records
            if isinstance(r.get(key), (int, float)) and math.isfinite(r[key])]


def curve_series(records: Sequence[dict[str, Any]]) -> tuple[list[tuple[float, float]], list[tuple[float, float]]]:
    """(training, validation) points of the same quantity: the weighted content + style + TV loss.
    The training total also holds the adversarial term, which validation leaves out (its
    discriminator keeps changing), so it is plotted only for runs logged before "perceptual"."""
    train = _series(records, "perceptual") or _series(records, "total")
    return train, _series(records, "val_loss")


def loss_curve(records: Sequence[dict[str, Any]], size: tuple[int, int] = (720, 400)) -> Image.Image:
    """Training loss (blue line) and validation loss (red dots), like with like, against the step."""
    width, height = size
    left, right, top, bottom = 70, 20, 30, 40
    image = Image.new("RGB", size, _BACKGROUND)
    draw = ImageDraw.Draw(image)
    train, val = curve_series(records)
    points = train + val
    draw.rectangle([left, top, width - right, height - bottom], outline=(0, 0, 0))
    draw.text((left, 8), "content + style + TV loss (blue: training, red: validation)", fill=(0, 0, 0))
    if not points:
        draw.text((left + 10, top + 10), "no metrics logged", fill=(0, 0, 0))
        return image
    x0, x1, y0, y1 = _extent(points)

    def at(step: float, value: float) -> tuple[float, float]:
        return (left + (step - x0) / (x1 - x0) * (width - left - right),
                height - bottom - (value - y0) / (y1 - y0) * (height - top - bottom))

    if len(train) > 1:
        draw.line([at(*p) for p in train], fill=(30, 90, 200), width=2)
    for p in val:
        x, y = at(*p)
        draw.ellipse([x - 3, y - 3, x + 3, y + 3], fill=(210, 40, 40))
    _label_axes(draw, at, (x0, x1), (y0, y1), size, bottom)
    return image


def _extent(points: list[tuple[float, float]]) -> tuple[float, float, float, float]:
    """Smallest and largest step and value, widened where they coincide (one point)."""
    x0, x1 = min(p[0] for p in points), max(p[0] for p in points)
    y0, y1 = min(p[1] for p in points), max(p[1] for p in points)
    return x0, (x1 if x1 > x0 else x0 + 1), y0, (y1 if y1 > y0 else y0 + abs(y0) * 0.1 + 1e-6)


def _label_axes(draw: ImageDraw.ImageDraw, at: Any, steps: tuple[float, float], values: tuple[float, float],
                size: tuple[int, int], bottom: int) -> None:
    """The lowest and highest value and step at the ends of the axes."""
    width, height = size
    for value in values:
        draw.text((4, at(steps[0], value)[1] - 6), f"{value:.4g}", fill=(0, 0, 0))
    for step in steps:
        draw.text((at(step, values[0])[0] - 10, height - bottom + 6), f"{step:.0f}", fill=(0, 0, 0))
    draw.text((width // 2 - 10, height - 18), "step", fill=(0, 0, 0))
