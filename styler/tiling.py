"""Stylize images of any size in bounded memory: overlapping tiles that share whole-image statistics.

Instance normalisation makes the generator non-local: every output pixel depends on per-channel
means and variances over the whole image. Running tiles naively therefore gives every tile its
own colour cast and visible seams. Here every ``InstanceNorm2d`` is swapped for
:class:`FixedStatsNorm`, which records the statistics once on a downscaled copy of the whole
image and then normalises every tile with them. With fixed statistics the network is purely
local (convolutions, affine normalisation, ReLU, nearest upsampling), so a tile whose context
extends at least the receptive-field radius beyond the pixels we keep computes exactly what the
untiled pass would. Tile origins are multiples of the generator stride so the pixel-unshuffle and
strided convolutions see the same sampling grid as the untiled pass, and cores overlap by a
few pixels that are blended with a raised-cosine window (a partition of unity), so any residual
difference fades smoothly instead of showing as a seam.
"""

from __future__ import annotations

import copy
import enum
import math
from contextlib import AbstractContextManager, nullcontext
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from styler.errors import ConfigError
from styler.models import Generator
from styler.models.generator import UpBlock

# Pixels on each side where neighbouring tiles overlap and are cross-faded.
BLEND = 32


class NormMode(enum.Enum):
    PLAIN = "plain"    # ordinary instance norm over the input it sees
    RECORD = "record"  # ordinary instance norm, and keep its statistics
    FIXED = "fixed"    # normalise with the recorded statistics


class FixedStatsNorm(nn.Module):
    """Instance norm that can record its per-(sample, channel) statistics and reuse them."""

    def __init__(self, norm: nn.InstanceNorm2d) -> None:
        super().__init__()
        self.eps = norm.eps
        self.weight, self.bias = norm.weight, norm.bias  # shared with the original module
        self.mode = NormMode.PLAIN
        self.mean: torch.Tensor | None = None
        self.var: torch.Tensor | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.mode is NormMode.FIXED:
            if self.mean is None or self.var is None or self.mean.shape[0] != x.shape[0]:
                raise RuntimeError("FixedStatsNorm: no statistics recorded for this batch size")
            mean, var = self.mean, self.var
        else:
            var, mean = torch.var_mean(x.float(), dim=(2, 3), keepdim=True, unbiased=False)
            if self.mode is NormMode.RECORD:
                self.mean, self.var = mean, var
        y = (x - mean) * torch.rsqrt(var + self.eps)
        if self.weight is not None:
            y = y * self.weight.view(1, -1, 1, 1) + self.bias.view(1, -1, 1, 1)
        return y.to(x.dtype)


class GlobalStatsGenerator(nn.Module):
    """A copy of a :class:`Generator` whose instance norms use statistics set by :meth:`collect`."""

    def __init__(self, generator: Generator) -> None:
        super().__init__()
        self.net = copy.deepcopy(generator).eval()
        self.margin = receptive_margin(generator)
        self.stride = generator.config.stride
        self.norms: list[FixedStatsNorm] = []
        for parent in list(self.net.modules()):
            for name, child in parent.named_children():
                if isinstance(child, nn.InstanceNorm2d):
                    fixed = FixedStatsNorm(child)
                    setattr(parent, name, fixed)
                    self.norms.append(fixed)

    def _set_mode(self, mode: NormMode) -> None:
        for norm in self.norms:
            norm.mode = mode

    @torch.no_grad()
    def collect(self, x: torch.Tensor) -> None:
        """Record every layer's statistics from a (downscaled) pass over the whole image ``x``."""
        self._set_mode(NormMode.RECORD)
        try:
            self.net(x)
        finally:
            self._set_mode(NormMode.FIXED)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def receptive_margin(generator: Generator) -> int:
    """Input pixels beyond a kept pixel that can influence it, rounded up to the stride, plus one
    stride of slack for the sampling grid. Walks the modules in execution order (true for
    :class:`Generator`: body then head; an UpBlock halves the scale before its 3x3 conv)."""
    scale, radius = 1, 0
    for module in generator.modules():
        if isinstance(module, nn.PixelUnshuffle):
            scale *= module.downscale_factor
        elif isinstance(module, nn.Conv2d):
            radius += (module.kernel_size[0] // 2) * module.dilation[0] * scale
            scale *= module.stride[0]
        elif isinstance(module, (UpBlock, nn.Upsample)):
            scale = max(1, scale // 2)
    stride = generator.config.stride
    return math.ceil((radius + stride) / stride) * stride


def downscale(x: torch.Tensor, longer: int) -> torch.Tensor:
    """Antialiased bilinear resize so the longer side is at most ``longer``."""
    h, w = x.shape[-2:]
    if max(h, w) <= longer:
        return x
    scale = longer / max(h, w)
    size = (max(1, round(h * scale)), max(1, round(w * scale)))
    return F.interpolate(x, size=size, mode="bilinear", antialias=True, align_corners=False)


def tile_starts(length: int, tile: int, stride: int) -> list[int]:
    """Starts of cores ``[s, s + tile)`` covering ``[0, length)``; neighbours overlap by BLEND."""
    step = tile - BLEND
    starts = [0]
    while starts[-1] + tile < length:
        starts.append(starts[-1] + step)
    assert all(s % stride == 0 for s in starts)
    return starts


def _ramp(start: int, end: int, length: int) -> torch.Tensor:
    """1-D weights of a core: raised-cosine fade over BLEND pixels at each inner edge."""
    w = torch.ones(end - start)
    fade = 0.5 - 0.5 * torch.cos(math.pi * (torch.arange(BLEND) + 0.5) / BLEND)
    if start > 0:
        w[:BLEND] = fade
    if end < length:
        w[-BLEND:] = 1.0 - fade  # the next core's fade-in covers exactly these pixels
    return w


def check_tile(tile: int, stride: int) -> None:
    if tile < 2 * BLEND or tile % stride:
        raise ConfigError(f"tile size must be a multiple of {stride} and at least {2 * BLEND}, got {tile}")


def tiled_forward(model: GlobalStatsGenerator, x: torch.Tensor, tile: int, device: torch.device,
                  autocast: Callable[[], AbstractContextManager[object]] = nullcontext,
                  stats_size: int | None = 1024, collect: bool = True) -> torch.Tensor:
    """Stylize ``x`` (N, 3, H, W, on any device) tile by tile on ``device``; returns float32 on
    ``x``'s device. Statistics come from ``x`` downscaled to ``stats_size`` (None: full size),
    unless ``collect`` is False (the caller already collected them)."""
    check_tile(tile, model.stride)
    if collect:
        small = downscale(x.float(), stats_size) if stats_size else x.float()
        with autocast():
            model.collect(small.to(device))
    n, _, h, w = x.shape
    out = torch.zeros(n, 3, h, w, dtype=torch.float32, device=x.device)
    m = model.margin
    for top in tile_starts(h, tile, model.stride):
        bottom = min(top + tile, h)
        wy = _ramp(top, bottom, h)
        c_top, c_bottom = max(0, top - m), min(h, bottom + m)
        for left in tile_starts(w, tile, model.stride):
            right = min(left + tile, w)
            c_left, c_right = max(0, left - m), min(w, right + m)
            crop = x[..., c_top:c_bottom, c_left:c_right].to(device, torch.float32)
            with torch.no_grad(), autocast():
                y = model(crop)
            core = y[..., top - c_top:bottom - c_top, left - c_left:right - c_left].float().to(x.device)
            weight = (wy[:, None] * _ramp(left, right, w)[None, :]).to(x.device)
            out[..., top:bottom, left:right].addcmul_(core, weight)
    return out
