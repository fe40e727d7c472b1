"""Write the training photos of the bundled styles into a folder.

Photos: the 12 nature photos of Debian's ``mate-backgrounds`` package (GPL-2+, fetched with
``apt-get download``; training on them ships none of them) scaled to at most 800 px, plus 12
of scikit-image's. Held out, never trained on, so the gallery and the study show photos the
generators never saw: astronaut, coffee, chelsea (samples/content), cat and rocket.

Usage:  python scripts/export_training_photos.py [OUT_DIR]     (default: runs/photos)
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from export_skimage_photos import parse_out, write_photos  # noqa: E402 (a sibling script, not a package)

HELD_OUT = ("astronaut", "coffee", "chelsea", "cat", "rocket")
SKIMAGE = ("hubble_deep_field", "immunohistochemistry", "retina", "camera", "brick", "grass", "gravel",
           "coins", "moon", "clock")


def mate_photos(work: Path) -> list[Path]:
    subprocess.run(["apt-get", "download", "mate-backgrounds"], cwd=work, check=True,
                   stdout=subprocess.DEVNULL)
    deb = next(work.glob("mate-backgrounds_*.deb"))
    subprocess.run(["dpkg-deb", "-x", str(deb), str(work / "root")], check=True)
    return sorted((work / "root/usr/share/backgrounds/mate/nature").glob("*.jpg"))


def main(out: Path) -> None:
    written = write_photos(out, SKIMAGE)
    with tempfile.TemporaryDirectory() as tmp:
        photos = mate_photos(Path(tmp))
        for path in photos:
            image = Image.open(path).convert("RGB")
            image.thumbnail((800, 800))
            image.save(out / f"mate_{path.stem}.jpg", quality=92)
    print(f"wrote {written + len(photos)} photos to {out}")


if __name__ == "__main__":
    main(parse_out("runs/photos", "the folder to write the photos to", __doc__))
