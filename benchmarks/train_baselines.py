"""What ``bench_train`` measures styler's training against: the step and the photo loading as
they were before the speed-ups, and pytorch/examples' fast_neural_style step."""

from __future__ import annotations

import copy
import math
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from benchmarks.transformer_net import TransformerNet
from styler.config import Features, Preprocess
from styler.device import full_precision
from styler.io.images import load_rgb, pil_to_tensor, resized_crop_params
from styler.nn.vgg import FeatureExtractor, build_feature_extractor
from styler.training.data import ContentDataset
from styler.training.losses import GramLayerLoss, StyleTerm

# pytorch/examples fast_neural_style: content at relu2_2, style Grams at these four (its Vgg16).
EXAMPLES_LAYERS = ("relu1_2", "relu2_2", "relu3_3", "relu4_3")


def autograd_gram(features: torch.Tensor) -> torch.Tensor:
    """The Gram matrix as pytorch/examples writes it, with autograd's backward (two products and a
    sum, where styler's ``gram_matrix`` takes one product); fp32, as in styler."""
    n, c, h, w = features.shape
    with full_precision(features.device):
        flat = features.reshape(n, c, h * w).float()
        return flat.bmm(flat.transpose(1, 2)) / (c * h * w)


class AutogradGramLayerLoss(nn.Module):
    """:class:`GramLayerLoss` with :func:`autograd_gram`: that style loss before the speed-ups."""

    def __init__(self, target: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("target", target)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        diff = autograd_gram(features) - self.target
        return diff.pow(2).mean() / (self.target.pow(2).mean() + 1e-8)


def use_autograd_gram(style: StyleTerm) -> None:
    """Swap a Gram style term's layers for :class:`AutogradGramLayerLoss` in place (same targets)."""
    for name, layer in style.layers.items():
        if isinstance(layer, GramLayerLoss):
            style.layers[name] = AutogradGramLayerLoss(layer.target)


def use_copying_relus(net: nn.Module) -> None:
    """ReLUs that write a new tensor, as the loss network's did before they worked in place."""
    for module in net.modules():
        if isinstance(module, nn.ReLU):
            module.inplace = False


class FullTrunk(nn.Module):
    """A loss network that ignores ``upto``: every pass, the content targets' too, runs the whole trunk."""

    def __init__(self, extractor: FeatureExtractor) -> None:
        super().__init__()
        self.extractor = extractor

    def forward(self, x: torch.Tensor, upto: str | None = None) -> dict[str, torch.Tensor]:
        return self.extractor(x)


class FullResolutionCrops(ContentDataset):
    """:class:`ContentDataset` reading photos the plain way: every crop decodes the whole photo,
    turns it into floats, and crops and resizes those."""

    def _crop(self, i: int, generator: torch.Generator) -> torch.Tensor:
        from torchvision.transforms.v2 import functional as TF

        tensor = pil_to_tensor(load_rgb(self.paths[i]))
        if min(tensor.shape[-2:]) < self.size:
            scale = self.size / min(tensor.shape[-2:])
            new = [max(self.size, round(s * scale)) for s in tensor.shape[-2:]]
            tensor = F.interpolate(tensor[None], size=new, mode="bilinear", align_corners=False)[0]
        top, left, h, w = resized_crop_params(*tensor.shape[-2:], generator)
        return TF.resized_crop(tensor, top, left, h, w, [self.size, self.size], antialias=True)


class ExamplesStep:
    """pytorch/examples fast_neural_style's training step (``neural_style.py train``), standalone:
    TransformerNet, Adam at 1e-3, one pass of the loss network over the output and one over the
    content batch (its whole trunk, as the example runs it), content MSE at relu2_2 times 1e5 and
    MSE of Gram matrices times 1e10. The loss network is a VGG-16 in the default (contiguous)
    layout: the file given, else torch's default initialisation (the same FLOPs)."""

    def __init__(self, style: torch.Tensor, device: torch.device, vgg_weights: Path | None = None,
                 preprocess: Preprocess = Preprocess.AUTO) -> None:
        if vgg_weights is not None:
            self.vgg = build_feature_extractor(Features.VGG16, EXAMPLES_LAYERS, weights_file=vgg_weights,
                                               preprocess=preprocess)
        else:
            self.vgg = FeatureExtractor(Features.VGG16, EXAMPLES_LAYERS)
        self.vgg = self.vgg.to(device)
        torch.manual_seed(0)
        self.net = TransformerNet().to(device).train()
        self.opt = torch.optim.Adam(self.net.parameters(), lr=1e-3)
        with torch.no_grad():
            self.grams = {k: autograd_gram(v) for k, v in self.vgg(style).items()}

    def __call__(self, x: torch.Tensor) -> float:
        self.opt.zero_grad()
        y = self.net(x)
        features_y, features_x = self.vgg(y), self.vgg(x)
        content = 1e5 * F.mse_loss(features_y["relu2_2"], features_x["relu2_2"])
        style = 1e10 * sum(F.mse_loss(autograd_gram(features_y[k]), g.expand(len(x), -1, -1))
                           for k, g in self.grams.items())
        total = content + style
        total.backward()
        self.opt.step()
        return float(total.detach())


def phone_photos(folder: Path, count: int, size: tuple[int, int] = (4000, 3000)) -> list[Path]:
    """``count`` synthetic phone-sized JPEGs (smooth random shapes plus sensor-like noise)."""
    w, h = size
    paths = []
    for seed in range(count):
        rng = np.random.default_rng(seed)
        coarse = Image.fromarray(rng.integers(0, 256, (max(2, h // 64), max(2, w // 64), 3), dtype=np.uint8))
        image = np.asarray(coarse.resize((w, h), Image.Resampling.BICUBIC), dtype=np.int16)
        image = image + rng.integers(-12, 13, (h, w, 1), dtype=np.int16)
        path = folder / f"phone_{seed}.jpg"
        Image.fromarray(image.clip(0, 255).astype(np.uint8)).save(path, quality=92)
        paths.append(path)
    return paths


def loader_images_per_s(dataset: ContentDataset, passes: int) -> list[float]:
    """Crops per second over each of ``passes`` passes over the dataset, seeded by position."""
    rates = []
    for p in range(passes):
        start = time.perf_counter()
        for i in range(len(dataset)):
            dataset[(i, p * len(dataset) + i)]
        rates.append(round(len(dataset) / (time.perf_counter() - start), 2))
    return rates



def layout_times(trainer, images: torch.Tensor, repeats: int) -> dict[str, float]:
    """Best wall and CPU ms of each network's share of a training step, in contiguous and in
    channels_last layout, on copies of the Trainer's networks called in turn: the loss network's
    content pass (up to the content layer, no gradients) and its pass over the output (forward,
    backward to the input), the discriminator's update (forward and backward of real and fake),
    its adversarial pass (backward to the input only), and the generator's forward and backward."""
    calls = {}
    for layout, tag in ((torch.contiguous_format, "contiguous"), (torch.channels_last, "channels_last")):
        nets = [copy.deepcopy(m).to(memory_format=layout) for m in (trainer.extractor, trainer.discriminator,
                                                                      trainer.generator)]
        calls.update({f"{name}_{tag}": call for name, call in _step_parts(*nets, trainer.loss.content_layer,
                                                                         images.contiguous(memory_format=layout))})
    for call in calls.values():  # warm-up: oneDNN's kernel choices
        call()
    best: dict[str, float] = {}
    for _ in range(repeats):
        for name, call in calls.items():
            wall, cpu = time.perf_counter(), time.process_time()
            call()
            best[f"{name}_ms"] = min(best.get(f"{name}_ms", math.inf), time.perf_counter() - wall)
            best[f"{name}_cpu_ms"] = min(best.get(f"{name}_cpu_ms", math.inf), time.process_time() - cpu)
    return {name: round(seconds * 1e3, 1) for name, seconds in best.items()}


def _step_parts(vgg: nn.Module, disc: nn.Module, gen: nn.Module, content_layer: str, x: torch.Tensor):
    def content() -> None:
        with torch.no_grad():
            vgg(x, upto=content_layer)

    def output() -> None:
        sum(v.mean() for v in vgg(x.clone().requires_grad_(True)).values()).backward()

    def update() -> None:
        disc(torch.cat([x, x])).mean().backward()

    def adversarial() -> None:
        disc.requires_grad_(False)
        disc(x.clone().requires_grad_(True)).mean().backward()
        disc.requires_grad_(True)

    def generator() -> None:
        gen(x).mean().backward()

    return [("features_content", content), ("features_output", output), ("discriminator_update", update),
            ("discriminator_adversarial", adversarial), ("generator", generator)]
