"""The --stroke-scale picture for the docs: one 2048 px photo stylized at S = 0.5, 1 and 2.

The repository's photos are at most 600 px, so coffee.jpg is upscaled (Lanczos) to 2048 px on the
longer side: a photo of that size, if a soft one. Top row: each whole result, shrunk to fit; bottom
row: the same 320x320 crop of the table at full resolution, where the stroke size shows.

    PYTHONPATH=. python -m benchmarks.stroke_scale_strip --style starry -o docs/img/stroke_scale.jpg
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from PIL import Image, ImageDraw

from styler.config import ApplyConfig
from styler.inference.stylizer import Stylizer
from styler.io.images import load_rgb

ROOT = Path(__file__).resolve().parent.parent
SCALES = (0.5, 1.0, 2.0)
CROP = 320


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--style", default="starry")
    parser.add_argument("--photo", type=Path, default=ROOT / "samples/content/coffee.jpg")
    parser.add_argument("--size", type=int, default=2048, help="longer side of the photo")
    parser.add_argument("-o", "--output", type=Path, default=ROOT / "docs/img/stroke_scale.jpg")
    args = parser.parse_args()
    photo = load_rgb(args.photo)
    photo = photo.resize((args.size, round(photo.height * args.size / photo.width)), Image.Resampling.LANCZOS)
    box = (photo.width // 20, photo.height * 11 // 20)  # the wooden table: texture shows the strokes
    box = (*box, box[0] + CROP, box[1] + CROP)
    whole_w = CROP
    panels = []
    for scale in SCALES:
        # 1024 px tiles with exact statistics: S = 0.5 runs the network on a 4096 px image
        config = ApplyConfig(stroke_scale=scale, tile=1024)
        stylizer = Stylizer.load(args.style, device="cpu", config=config)
        start = time.perf_counter()
        out = stylizer(photo)
        print(f"stroke scale {scale}: {out.size[0]}x{out.size[1]} in {time.perf_counter() - start:.1f}s")
        small = out.resize((whole_w, round(out.height * whole_w / out.width)), Image.Resampling.LANCZOS)
        panels.append((scale, small, out.crop(box)))
    height = panels[0][1].height + CROP + 24
    sheet = Image.new("RGB", (len(panels) * (CROP + 4), height), "white")
    draw = ImageDraw.Draw(sheet)
    for i, (scale, small, crop) in enumerate(panels):
        x = i * (CROP + 4)
        draw.text((x + 4, 4), f"--stroke-scale {scale:g}", fill="black")
        sheet.paste(small, (x, 20))
        sheet.paste(crop, (x, 24 + small.height))
    args.output.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(args.output, quality=85)
    print(f"wrote {args.output} ({args.output.stat().st_size // 1024} KB)")


if __name__ == "__main__":
    main()
