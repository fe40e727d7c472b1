"""The ``--stroke-scale auto`` picture for docs/usage.md: one photo at two sizes, shown at one size.

A 1000 px copy of the photo at the default stroke scale (auto is 1 there), the 4000 px copy at
``--stroke-scale 1`` (the strokes keep their size in pixels, so shrunk for display they almost
vanish: a texture filter), and the 4000 px copy at ``auto`` (S = 3.9 for the bundled styles),
which should look like the first. The repository's photos are at most 600 px, so the copies are
Lanczos upscales: soft photos, but what matters here is the size of the strokes.

    PYTHONPATH=. python -m benchmarks.stroke_scale_auto --style starry -o docs/img/stroke_scale_auto.jpg
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from PIL import Image, ImageDraw

from styler.config import ApplyConfig
from styler.inference.stylizer import Stylizer
from styler.io.images import load_rgb, resize_longer

ROOT = Path(__file__).resolve().parent.parent
PANEL = 480  # display width of each result
# (label, longer side of the photo, stroke scale)
RUNS = (("1000 px, auto (S = 1)", 1000, "auto"), ("4000 px, --stroke-scale 1", 4000, 1.0),
        ("4000 px, auto (S = {s:.1f})", 4000, "auto"))


def stylized(style: str, photo: Image.Image, size: int, scale: float | str) -> tuple[Image.Image, float]:
    upscaled = photo.resize((size, round(photo.height * size / photo.width)), Image.Resampling.LANCZOS)
    stylizer = Stylizer.load(style, device="cpu", config=ApplyConfig(stroke_scale=scale))
    start = time.perf_counter()
    out = stylizer(upscaled)
    used = stylizer.stroke_scale_for(upscaled.height, upscaled.width)
    print(f"{size} px at stroke scale {scale} (S = {used:.2f}): {time.perf_counter() - start:.1f}s")
    return out, used


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--style", default="starry")
    parser.add_argument("--photo", type=Path, default=ROOT / "samples/content/coffee.jpg")
    parser.add_argument("-o", "--output", type=Path, default=ROOT / "docs/img/stroke_scale_auto.jpg")
    args = parser.parse_args()
    photo = load_rgb(args.photo)
    panels = []
    for label, size, scale in RUNS:
        out, used = stylized(args.style, photo, size, scale)
        panels.append((label.format(s=used), resize_longer(out, PANEL)))
    height = max(p.height for _, p in panels) + 22
    sheet = Image.new("RGB", (len(panels) * (PANEL + 6) - 6, height), "white")
    draw = ImageDraw.Draw(sheet)
    for i, (label, panel) in enumerate(panels):
        draw.text((i * (PANEL + 6) + 4, 4), label, fill="black")
        sheet.paste(panel, (i * (PANEL + 6), 22))
    args.output.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(args.output, quality=85)
    print(f"wrote {args.output} ({args.output.stat().st_size // 1024} KB)")


if __name__ == "__main__":
    main()
