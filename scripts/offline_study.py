"""Offline-quality study: train short runs with random features under several settings and
score them on held-out photos with one common yardstick.

Usage: python scripts/offline_study.py OUT_DIR [--steps 200] [--size 128] [--only NAME ...]
Writes OUT_DIR/<name>.safetensors, OUT_DIR/<name>.png (held-out photos stylized) and
OUT_DIR/results.jsonl. docs/offline-quality.md reports the outcome.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
from PIL import Image

from styler.config import DEFAULT_LAYERS, Features, GeneratorConfig, LossConfig, StyleLoss, TrainConfig, Upsample
from styler.inference.stylizer import Stylizer
from styler.io.images import load_rgb, load_style_image, pil_to_tensor, resize_longer, tensor_to_pil
from styler.nn.vgg import build_feature_extractor
from styler.training.losses import ContentLoss, GramLoss, PerceptualLoss, SlicedWassersteinLoss
from styler.training.trainer import Trainer

ROOT = Path(__file__).resolve().parent.parent
STYLE = ROOT / "samples/styles/starry_night.jpg"
HELD_OUT = sorted((ROOT / "samples/content").glob("*.jpg"))
STYLE_SIZE = 320  # as scripts/train_bundled.sh

VARIANTS: dict[str, dict] = {
    "gram_half": dict(style_loss=StyleLoss.GRAM, width=2, adv=0.05),
    "sliced_half": dict(style_loss=StyleLoss.SLICED, width=2, adv=0.05),
    "sliced_half_noadv": dict(style_loss=StyleLoss.SLICED, width=2, adv=0.0),
    "sliced_half_adv02": dict(style_loss=StyleLoss.SLICED, width=2, adv=0.2),
    "sliced_full": dict(style_loss=StyleLoss.SLICED, width=1, adv=0.05),
    "sliced_half_uncal": dict(style_loss=StyleLoss.SLICED, width=2, adv=0.05, calibrate=False),
    # Round 2 (against the fine grid texture, for larger strokes): a TV weight of 1e-4 is inert
    # once losses are normalised (the term is ~1e-5 against a total of ~2).
    "sliced_half_tv1": dict(style_loss=StyleLoss.SLICED, width=2, adv=0.05, tv=1.0),
    "sliced_half_tv1_style512": dict(style_loss=StyleLoss.SLICED, width=2, adv=0.05, tv=1.0, style_size=512),
    "sliced_half_bilinear": dict(style_loss=StyleLoss.SLICED, width=2, adv=0.05, upsample=Upsample.BILINEAR),
    "sliced_half_tv1_bilinear": dict(style_loss=StyleLoss.SLICED, width=2, adv=0.05, tv=1.0,
                                     upsample=Upsample.BILINEAR),
    "sliced_half_tv1_antialias": dict(style_loss=StyleLoss.SLICED, width=2, adv=0.05, tv=1.0, antialias=True),
    "sliced_half_tv1_bilinear_style512": dict(style_loss=StyleLoss.SLICED, width=2, adv=0.05, tv=1.0,
                                              upsample=Upsample.BILINEAR, style_size=512),
    # Round 3: the chosen recipe (tv1, bilinear, style 512) with one change each.
    "recipe_adv02": dict(style_loss=StyleLoss.SLICED, width=2, adv=0.2, tv=1.0, upsample=Upsample.BILINEAR,
                         style_size=512),
    "recipe_uncal": dict(style_loss=StyleLoss.SLICED, width=2, adv=0.05, tv=1.0, upsample=Upsample.BILINEAR,
                         style_size=512, calibrate=False),
    "sliced_half_tv1_smooth": dict(style_loss=StyleLoss.SLICED, width=2, adv=0.05, tv=1.0,
                                   upsample=Upsample.BILINEAR, antialias=True),
}


class Yardstick:
    """Common scoring network: full-width calibrated random VGG-19, Gram and sliced distances."""

    def __init__(self, size: int) -> None:
        content_layer, style_layers = DEFAULT_LAYERS[Features.RANDOM]
        self.content_layer = content_layer
        self.net = build_feature_extractor(Features.RANDOM, (content_layer, *style_layers), seed=1234)
        style = load_style_image(STYLE, 2 * size)
        self.net.calibrate(style)
        feats = {k: v for k, v in self.net(style).items() if k in style_layers}
        self.gram, self.sliced = GramLoss(feats), SlicedWassersteinLoss(feats, projections=128, seed=7)
        self.content = ContentLoss()

    @torch.no_grad()
    def score(self, output: torch.Tensor, photo: torch.Tensor) -> dict[str, float]:
        fo, fp = self.net(output), self.net(photo)
        return {"content": float(self.content(fo[self.content_layer], fp[self.content_layer])),
                "gram": float(self.gram(fo)), "sliced": float(self.sliced(fo)),
                "hf": high_frequency_ratio(output, photo)}


def high_frequency_ratio(output: torch.Tensor, photo: torch.Tensor) -> float:
    """Spectral energy of the output's luminance above 1/4 cycle per pixel, relative to the
    photo's: a measure of the fine grid texture (1.0 = as much fine detail as the photo)."""
    def energy(img: torch.Tensor) -> float:
        lum = img.mean(1)[0]
        power = torch.fft.fft2(lum - lum.mean()).abs().pow(2)
        fy = torch.fft.fftfreq(lum.shape[0]).abs()[:, None]
        fx = torch.fft.fftfreq(lum.shape[1]).abs()[None, :]
        return float(power[torch.maximum(fy, fx) > 0.25].sum() / power.sum())
    return energy(output) / energy(photo)


def run_variant(name: str, spec: dict, out: Path, photos: Path, steps: int, size: int, yard: Yardstick) -> dict:
    loss = LossConfig(style_loss=spec["style_loss"], adv_weight=spec["adv"], tv_weight=spec.get("tv", 1e-4))
    style_size = spec.get("style_size", STYLE_SIZE)
    cfg = TrainConfig(name=name, steps=steps, image_size=size, style_size=style_size, features=Features.RANDOM,
                      feature_width_divisor=spec["width"], d_every=1, num_workers=0, loss=loss, seed=0,
                      val_every=max(steps // 6, 1), checkpoint_every=steps,
                      generator=GeneratorConfig(upsample=spec.get("upsample", Upsample.NEAREST),
                                                antialias=spec.get("antialias", False), num_downsamples=3))
    # Its run folder beside its styles, not in the user's data folder.
    trainer = Trainer(cfg, STYLE, photos, out, torch.device("cpu"), run_dir=out / "runs" / name)
    if not spec.get("calibrate", True):
        # Rebuild the loss network without the per-layer rescaling, for the comparison only.
        content_layer, style_layers = DEFAULT_LAYERS[Features.RANDOM]
        ext = build_feature_extractor(Features.RANDOM, (content_layer, *style_layers), seed=0, width_divisor=spec["width"])
        trainer.loss = PerceptualLoss(ext, content_layer, style_layers, load_style_image(STYLE, style_size), loss)
    start = time.perf_counter()
    result = trainer.run()
    seconds = time.perf_counter() - start
    stylizer = Stylizer.load(result.weights_path, device="cpu")
    tiles, scores = [], []
    for path in HELD_OUT:
        photo = pil_to_tensor(resize_longer(load_rgb(path), 2 * size))[None]
        styled = stylizer(photo)
        scores.append(yard.score(styled, photo))
        tiles += [tensor_to_pil(photo), tensor_to_pil(styled)]
    w, h = max(t.width for t in tiles), max(t.height for t in tiles)
    sheet = Image.new("RGB", (2 * w, h * len(HELD_OUT)), "white")
    for i, tile in enumerate(tiles):
        sheet.paste(tile, ((i % 2) * w, (i // 2) * h))
    sheet.save(out / f"{name}.png")
    mean = {k: round(sum(s[k] for s in scores) / len(scores), 4) for k in scores[0]}
    return {"name": name, **{k: (v.value if hasattr(v, "value") else v) for k, v in spec.items()},
            "steps": steps, "size": size, "train_seconds": round(seconds), "held_out": mean,
            "final_train_losses": {k: round(v, 4) for k, v in result.losses.items()}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--photos", type=Path, default=ROOT / "runs/photos")
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--only", nargs="*", default=list(VARIANTS))
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(args.threads)
    yard = Yardstick(args.size)
    for name in args.only:
        record = run_variant(name, VARIANTS[name], args.out, args.photos, args.steps, args.size, yard)
        with (args.out / "results.jsonl").open("a") as fh:
            fh.write(json.dumps(record) + "\n")
        print(json.dumps(record), flush=True)


if __name__ == "__main__":
    main()
