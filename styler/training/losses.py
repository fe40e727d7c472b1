"""Loss terms, each a small module; :class:`PerceptualLoss` composes content and style.

Content and style terms are divided by the magnitude of their targets, so one set of weights
works for any feature network (ImageNet or random) and any image size.
"""

from __future__ import annotations

import contextlib
import logging
from typing import Iterator

import torch
import torch.nn.functional as F
from torch import nn
from torch.autograd.function import once_differentiable

from styler.config import LossConfig, StyleLoss
from styler.device import full_precision
from styler.nn.vgg import FeatureExtractor

_EPS = 1e-8

log = logging.getLogger(__name__)


class _Gram(torch.autograd.Function):
    """F F^T with a one-product backward: dL/dF = (dG + dG^T) F.

    Autograd's own backward of ``flat @ flat.transpose(1, 2)`` takes one product per operand and
    adds the two, in two different memory layouts, which at relu1_2 costs three times the forward.
    The gradient here comes back in the features' own layout (channels_last from the loss
    network), so the ReLU and convolution backward passes that follow read it contiguously."""

    @staticmethod
    def forward(ctx, features: torch.Tensor) -> torch.Tensor:
        n, c, h, w = features.shape
        flat = features.reshape(n, c, h * w).float()
        ctx.save_for_backward(flat)
        ctx.shape, ctx.dtype = (n, c, h, w), features.dtype
        ctx.nhwc = not features.is_contiguous() and features.is_contiguous(memory_format=torch.channels_last)
        return torch.bmm(flat, flat.transpose(1, 2)) / (c * h * w)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        (flat,) = ctx.saved_tensors
        n, c, h, w = ctx.shape
        sym = (grad + grad.transpose(1, 2)) / (c * h * w)
        if ctx.nhwc:  # (N, HW, C) @ (N, C, C): rows are pixels, i.e. channels_last memory
            out = torch.bmm(flat.transpose(1, 2), sym).view(n, h, w, c).permute(0, 3, 1, 2)
        else:
            out = torch.bmm(sym, flat).view(n, c, h, w)
        return out.to(ctx.dtype)


def gram_matrix(features: torch.Tensor) -> torch.Tensor:
    """(N, C, H, W) -> (N, C, C) in fp32, divided by C*H*W so it does not grow with image size.

    Autocast is turned off: under it ``.float()`` inputs still give a bf16 matmul, whose
    rounding (relative error ~4e-3) would blur the style statistics the loss compares."""
    with full_precision(features.device):
        return _Gram.apply(features)


class ContentLoss(nn.Module):
    """Feature MSE at one layer, relative to the target features' mean square."""

    def forward(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        output, target = output.float(), target.float()
        return F.mse_loss(output, target) / (target.pow(2).mean() + _EPS)


class StyleTerm(nn.Module):
    """A style loss composed as in crowsonkb/style-transfer-pytorch: one small module per feature
    layer, each holding its target as buffers, averaged here. ``rng`` draws the term's random
    choices, if it makes any; its state is checkpointed so a resumed run draws the same."""

    def __init__(self, per_layer: dict[str, nn.Module], rng: torch.Generator | None = None) -> None:
        super().__init__()
        self.layers = nn.ModuleDict(per_layer)
        self.rng = rng

    def forward(self, features: dict[str, torch.Tensor]) -> torch.Tensor:
        return sum(loss(features[name]) for name, loss in self.layers.items()) / len(self.layers)


class GramLayerLoss(nn.Module):
    """One layer of Gatys et al.'s (2016) style loss: Gram-matrix MSE relative to the target's."""

    def __init__(self, style_features: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("target", gram_matrix(style_features).mean(0, keepdim=True))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        diff = gram_matrix(features) - self.target
        return diff.pow(2).mean() / (self.target.pow(2).mean() + _EPS)


class GramLoss(StyleTerm):
    """Gatys et al. (2016) style loss: Gram matrices at several layers, relative MSE."""

    def __init__(self, style_features: dict[str, torch.Tensor]) -> None:
        super().__init__({name: GramLayerLoss(feats) for name, feats in style_features.items()})


class SlicedLayerLoss(nn.Module):
    """One layer of the sliced Wasserstein loss: a bank of unit directions, the style's sorted
    projections on each (as quantiles) and the style's feature variance, all buffers."""

    def __init__(self, style_features: torch.Tensor, bank_rng: torch.Generator, rng: torch.Generator,
                 projections: int, bank_size: int, quantiles: int) -> None:
        super().__init__()
        self.rng, self.projections, self.bank_size = rng, projections, bank_size
        flat = style_features[:1].float().flatten(2)[0]  # (C, HW)
        dirs = torch.randn(flat.shape[0], bank_size, generator=bank_rng).to(flat.device)
        dirs = dirs / dirs.norm(dim=0, keepdim=True)
        self.register_buffer("dirs", dirs)
        self.register_buffer("sorted", _sorted_quantiles(dirs, flat, quantiles))
        self.register_buffer("scale", flat.var(dim=1).mean() + _EPS)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        pick = torch.randperm(self.bank_size, generator=self.rng)[: self.projections].to(features.device)
        proj_style = self.sorted.index_select(0, pick)  # (P, Q)
        with full_precision(features.device):  # fp32 projections, as for the Gram matrices
            out = features.float().flatten(2)  # (N, C, HW)
            proj_out = torch.sort(self.dirs.index_select(1, pick).T @ out, dim=-1).values  # (N, P, HW)
            if proj_style.shape[-1] != proj_out.shape[-1]:
                # Compare quantiles when the two have different numbers of positions.
                proj_style = F.interpolate(proj_style[None], size=proj_out.shape[-1], mode="linear",
                                           align_corners=True)[0]
            return (proj_out - proj_style.unsqueeze(0)).pow(2).mean() / self.scale


class SlicedWassersteinLoss(StyleTerm):
    """Heitz et al., "A Sliced Wasserstein Loss for Neural Texture Synthesis" (CVPR 2021).

    Projects the features of each layer onto random unit directions and compares the sorted
    projections (1-D optimal transport), matching whole feature distributions rather than
    second moments only.

    Departure from the paper, for speed: instead of drawing fresh directions every call, each
    layer keeps a seeded bank of ``bank_size`` directions whose sorted style projections are
    computed once (stored as ``quantiles`` evenly spaced quantiles); every call draws
    ``projections`` of them at random. Sorting the style image's projections every step would be
    about half of this loss's cost, and the loss the largest part of an offline training step
    (docs/performance.md); a bank 16x larger than one call's draw still covers the directions
    richly.
    """

    def __init__(self, style_features: dict[str, torch.Tensor], projections: int = 64, seed: int = 0,
                 bank_size: int = 1024, quantiles: int = 4096) -> None:
        if not 0 < projections <= bank_size:
            raise ValueError(f"projections must be in 1..bank_size ({bank_size}), got {projections}")
        bank_rng = torch.Generator().manual_seed(seed)
        rng = torch.Generator().manual_seed(seed + 1)  # which bank entries each call uses
        layers = {}
        for index, (name, feats) in enumerate(style_features.items(), 1):
            # The slow part of setup at a large --style-size: say where it is.
            log.debug("preparing the painting's statistics: layer %d of %d (%s, %d positions)", index,
                      len(style_features), name, feats.shape[-2] * feats.shape[-1])
            layers[name] = SlicedLayerLoss(feats, bank_rng, rng, projections, bank_size, quantiles)
        super().__init__(layers, rng)


def _sorted_quantiles(dirs: torch.Tensor, flat: torch.Tensor, quantiles: int, chunk: int = 128) -> torch.Tensor:
    """Sorted projections of ``flat`` (C, HW) on each direction, resampled to at most
    ``quantiles`` evenly spaced quantiles; chunked so a large style image fits in memory."""
    count = min(flat.shape[1], quantiles)
    rows = []
    for part in dirs.split(chunk, dim=1):
        proj = torch.sort(part.T @ flat, dim=-1).values  # (chunk, HW)
        if proj.shape[-1] != count:
            proj = F.interpolate(proj[None], size=count, mode="linear", align_corners=True)[0]
        rows.append(proj)
    return torch.cat(rows)


class TotalVariationLoss(nn.Module):
    """Mean absolute difference of neighbouring pixels; discourages high-frequency noise."""

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        dh = (image[..., 1:, :] - image[..., :-1, :]).abs().mean()
        dw = (image[..., :, 1:] - image[..., :, :-1]).abs().mean()
        return (dh + dw).float()


class TemporalLoss(nn.Module):
    """Steady strokes under small motion and sensor noise, for video.

    A feed-forward generator redraws its strokes when the photo moves by a fraction of its
    stride or gains a little noise, which is what makes a stylized video flicker even with
    shared normalisation statistics (docs/performance.md). Following Gupta et al.,
    "Characterizing and Improving Stability in Neural Style Transfer" (ICCV 2017), the batch is
    stylized twice: as it is and moved by a random (dy, dx) in 0..``max_shift`` with Gaussian
    noise of a random strength up to ``noise``. The loss is the mean absolute difference between
    the second output and the first moved the same way, away from the edges. Departures: a
    known synthetic translation instead of optical flow between real frames (no video data or
    flow network is needed, and shifts up to the generator's stride cover every sampling phase
    of its strided layers), and L1 instead of their squared error, to match the flicker measure
    (mean absolute difference). Draws are a function of (seed, step), so a resumed run repeats them.
    """

    def __init__(self, max_shift: int, noise: float, margin: int, seed: int = 0) -> None:
        super().__init__()
        self.max_shift, self.noise, self.margin, self.seed = max_shift, noise, margin, seed

    def moved(self, content: torch.Tensor, step: int) -> tuple[torch.Tensor, tuple[int, int]]:
        """``content`` moved up-left by a random (dy, dx) (the far edges reflected back in, so
        the size stays and both versions go through the generator as one batch) plus noise."""
        seed = self.seed * 1_000_003 + step
        gen = torch.Generator().manual_seed(seed)
        dy, dx = (int(v) for v in torch.randint(0, self.max_shift + 1, (2,), generator=gen))
        moved = F.pad(content[..., dy:, dx:], (0, dx, 0, dy), mode="reflect") if dy or dx else content
        # The noise is drawn where the batch lives (no full-batch host tensor and copy every step
        # on a GPU); on the CPU the same generator goes on, which the bundled -video styles used.
        on_device = gen if content.device.type == "cpu" else torch.Generator(device=content.device).manual_seed(seed)
        sigma = torch.rand((content.shape[0], 1, 1, 1), generator=on_device, device=content.device) * self.noise
        noise = torch.randn(content.shape, generator=on_device, device=content.device) * sigma
        return (moved + noise.to(content.dtype)).clamp(0, 1), (dy, dx)

    def forward(self, output: torch.Tensor, moved_output: torch.Tensor, shift: tuple[int, int]) -> torch.Tensor:
        dy, dx = shift
        h, w = output.shape[-2:]
        m = self.margin
        # moved_output[y, x] shows what output[y + dy, x + dx] shows.
        ref = output[..., dy + m:h - m, dx + m:w - m]
        out = moved_output[..., m:h - m - dy, m:w - m - dx]
        return (out.float() - ref.float()).abs().mean()


# Hinge adversarial loss (Lim & Ye 2017; Miyato et al. 2018). Chosen over LSGAN because it pairs
# with the spectral-normalised discriminator: the discriminator stops pushing on patches it
# already classifies with margin, which keeps it from overpowering a small generator trained on a
# single style image.


def hinge_discriminator_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    return F.relu(1.0 - real_logits.float()).mean() + F.relu(1.0 + fake_logits.float()).mean()


def hinge_generator_loss(fake_logits: torch.Tensor) -> torch.Tensor:
    return -fake_logits.float().mean()


class PerceptualLoss(nn.Module):
    """Weighted content + style + total-variation loss of a generated batch.

    Style targets are computed once from the style image at construction.
    """

    def __init__(self, extractor: FeatureExtractor, content_layer: str, style_layers: tuple[str, ...],
                 style_image: torch.Tensor, config: LossConfig, seed: int = 0) -> None:
        super().__init__()
        self.extractor = extractor
        self.content_layer = content_layer
        self.style_layers = style_layers
        self.config = config
        with torch.no_grad():
            style_feats = {k: v for k, v in extractor(style_image).items() if k in style_layers}
        if config.style_loss is StyleLoss.SLICED:
            self.style: StyleTerm = SlicedWassersteinLoss(style_feats, seed=seed)
        else:
            self.style = GramLoss(style_feats)
        self.content = ContentLoss()
        self.tv = TotalVariationLoss()

    def forward(self, output: torch.Tensor, content: torch.Tensor) -> dict[str, torch.Tensor]:
        with torch.no_grad():
            # Only the content layer: the deeper style layers would be a wasted ~3/4 of this pass.
            target = self.extractor(content, upto=self.content_layer)[self.content_layer]
        feats = self.extractor(output)
        terms = {
            "content": self.content(feats[self.content_layer], target),
            "style": self.style(feats),
            "tv": self.tv(output),
        }
        terms["total"] = (self.config.content_weight * terms["content"]
                          + self.config.style_weight * terms["style"]
                          + self.config.tv_weight * terms["tv"])
        return terms

    def draw_state(self) -> torch.Tensor | None:
        """State of the style term's random draws (None if it makes none), for checkpoints."""
        return self.style.rng.get_state() if self.style.rng is not None else None

    def set_draw_state(self, state: torch.Tensor | None) -> None:
        if self.style.rng is not None and state is not None:
            self.style.rng.set_state(state)

    @contextlib.contextmanager
    def fixed_draws(self, seed: int) -> Iterator[None]:
        """The same random draws at every evaluation, without disturbing training's."""
        saved = self.draw_state()
        if self.style.rng is not None:
            self.style.rng.manual_seed(seed)
        try:
            yield
        finally:
            self.set_draw_state(saved)
