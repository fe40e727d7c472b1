"""Gallery for the README: each held-out photo next to its stylization in every bundled style.

Usage: python scripts/make_gallery.py [-o samples/gallery.jpg] [--size 320] [--with-video]
The top row shows the paintings, captioned with the painting, its painter and the style's name
(samples/styles/SOURCES.md); the first column the photos (none of them used in training). How
each style was trained (steps, loss network file) is `styler styles -v`'s to say.
The -video variants (the same paintings, steadier on video) are left out unless --with-video.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

from styler.inference.stylizer import Stylizer
from styler.io.images import load_rgb
from styler.io.weights import bundled_dir, list_weights

ROOT = Path(__file__).resolve().parent.parent
SOURCES = ROOT / "samples/styles/SOURCES.md"


def paintings() -> dict[str, tuple[str, str]]:
    """file name -> (work, "artist, year") from the table in samples/styles/SOURCES.md."""
    rows = (line.strip().strip("|").split("|") for line in SOURCES.read_text().splitlines() if line.startswith("|"))
    return {cells[0].strip(): (cells[1].strip(), cells[2].strip()) for cells in rows if len(cells) >= 3}


def fit(image: Image.Image, size: int) -> Image.Image:
    """Centre-crop to a square and resize, so the grid is regular."""
    side = min(image.size)
    left, top = (image.width - side) // 2, (image.height - side) // 2
    return image.crop((left, top, left + side, top + side)).resize((size, size), Image.Resampling.LANCZOS)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-o", "--output", type=Path, default=ROOT / "samples/gallery.jpg")
    parser.add_argument("--size", type=int, default=320)
    parser.add_argument("--weights-dir", type=Path, default=bundled_dir())
    parser.add_argument("--with-video", action="store_true", help="also the -video variants")
    args = parser.parse_args()
    infos = [i for i in list_weights(args.weights_dir)
             if not isinstance(i, Exception) and (args.with_video or not i.name.endswith("-video"))]
    photos = sorted((ROOT / "samples/content").glob("*.jpg"))
    s, label = args.size, 48
    grid = Image.new("RGB", ((len(infos) + 1) * s, (len(photos) + 1) * s + label), "white")
    draw = ImageDraw.Draw(grid)
    font, known = ImageFont.load_default(size=17), paintings()
    for col, info in enumerate(infos, start=1):
        style_file = str(info.metadata.get("style_file", ""))
        if (ROOT / "samples/styles" / style_file).is_file():
            grid.paste(fit(load_rgb(ROOT / "samples/styles" / style_file), s), (col * s, label))
        work, artist = known.get(style_file, (style_file, ""))
        draw.text((col * s + 6, 3), work, fill="black", font=font)
        draw.text((col * s + 6, 25), f"{artist}   --style {info.name}", fill="black", font=font)
    draw.text((6, 3), "photos not used in training", fill="black", font=font)
    stylizers = [Stylizer.load(info.path, device="cpu") for info in infos]
    for row, photo_path in enumerate(photos, start=1):
        photo = fit(load_rgb(photo_path), 2 * s)
        y = row * s + label
        grid.paste(photo.resize((s, s), Image.Resampling.LANCZOS), (0, y))
        for col, stylizer in enumerate(stylizers, start=1):
            # Stylize at twice the cell size, as a user would at full resolution, then shrink.
            grid.paste(stylizer(photo).resize((s, s), Image.Resampling.LANCZOS), (col * s, y))
    args.output.parent.mkdir(parents=True, exist_ok=True)
    grid.save(args.output, quality=88)
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
