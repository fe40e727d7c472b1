"""Write scikit-image's bundled photos into a folder, as the training set for bundled styles.

The photos in samples/content (astronaut, coffee, chelsea) are held out: the gallery shows
styles on photos the generators never saw. Usage:
    python scripts/export_skimage_photos.py runs/photos
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image
from skimage import data

HELD_OUT = ("astronaut", "coffee", "chelsea", "cat")
TRAIN = ("rocket", "hubble_deep_field", "immunohistochemistry", "retina", "camera", "coins", "moon",
         "clock", "brick", "grass", "gravel", "cell", "text", "page")


def write_photos(out: Path, names: tuple[str, ...]) -> int:
    """Write scikit-image's photos ``names`` and the stereo motorcycle pair as PNGs into ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    for name in names:
        Image.fromarray(np.asarray(getattr(data, name)())).convert("RGB").save(out / f"{name}.png")
    left, right, _ = data.stereo_motorcycle()
    Image.fromarray(left).save(out / "motorcycle_left.png")
    Image.fromarray(right).save(out / "motorcycle_right.png")
    return len(names) + 2


def main(out: Path) -> None:
    print(f"wrote {write_photos(out, TRAIN)} photos to {out}")


def parse_out(default: str, what: str, doc: str | None = __doc__) -> Path:
    """The one optional argument, a folder; ``--help`` prints the usage (the first line of ``doc``)
    instead of naming a folder."""
    p = argparse.ArgumentParser(description=(doc or "").split("\n")[0])
    p.add_argument("out", nargs="?", type=Path, default=Path(default), help=f"{what} (default: {default})")
    return p.parse_args().out


if __name__ == "__main__":
    main(parse_out("runs/photos", "the folder to write the photos to"))
