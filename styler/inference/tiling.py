"""Stylize images of any size in bounded memory: tiles that share whole-image statistics.

Instance normalisation makes the generator non-local: every output pixel depends on per-channel
means and variances over the whole image. Running tiles naively therefore gives every tile its
own colour cast and visible seams. Here every ``InstanceNorm2d`` is swapped for
:class:`FixedStatsNorm`, which normalises with statistics set from outside. With fixed statistics
the network is purely local (convolutions, affine normalisation, ReLU, upsampling), so a
tile whose context extends at least the receptive-field radius beyond the pixels we keep computes
exactly what the untiled pass would. Tile origins are multiples of the generator stride so the
pixel-unshuffle and strided convolutions see the same sampling grid as the untiled pass.

Two ways to get the statistics (:class:`styler.config.TileStats`):

* EXACT (default): every norm's statistics over the whole padded image at full resolution, so
  the tiled output equals the untiled forward to float rounding. Norms are measured in forward
  order: for norm k, with all earlier norms fixed to their exact values, the tiles run only up
  to norm k (:class:`_Reached` stops them) and its input is summed, in float64, over a
  partition of its positions. The activation after the last strided stage holds as many floats
  as the input image, so the input of the last encoder norm is built whole once the earlier
  norms are known; that norm and the residual blocks run on it directly with ordinary instance
  norm, and the decoder runs tile-wise from
  it, its norms measured the same way. Cost: see docs/performance.md.
* DOWNSCALED: one whole-image pass on a copy shrunk to ``stats_size`` records every norm, then
  overlapping tiles are blended with a raised-cosine window. Cheaper, but low-resolution
  features have other statistics, so the result differs visibly from the untiled pass.
"""

from __future__ import annotations

import copy
import enum
import math
from contextlib import AbstractContextManager, nullcontext
from fractions import Fraction
from typing import Callable, Iterator

import torch
import torch.nn.functional as F
from torch import nn

from styler.config import TileStats
from styler.errors import ConfigError
from styler.nn import Generator
from styler.nn.generator import finish_output, pad_to_stride, reach

# Pixels on each side where neighbouring tiles overlap and are cross-faded (DOWNSCALED mode).
BLEND = 32

Autocast = Callable[[], AbstractContextManager[object]]


class NormMode(enum.Enum):
    PLAIN = "plain"    # ordinary instance norm over the input it sees
    RECORD = "record"  # ordinary instance norm, and keep its statistics
    FIXED = "fixed"    # normalise with the recorded statistics
    STOP = "stop"      # the norm being measured: hand its input out by raising _Reached
    SMOOTH = "smooth"  # pass the input's statistics through ``smooth`` (inference.temporal), use and keep them


class _Reached(Exception):
    """Carries the input of the norm being measured out of the forward pass: nothing after it
    is needed for that norm's statistics, so the rest of the network is skipped."""

    def __init__(self, x: torch.Tensor) -> None:
        super().__init__("norm reached")
        self.x = x


class FixedStatsNorm(nn.Module):
    """Instance norm that can record its per-(sample, channel) statistics and reuse them."""

    def __init__(self, norm: nn.InstanceNorm2d) -> None:
        super().__init__()
        self.eps = norm.eps
        self.weight, self.bias = norm.weight, norm.bias  # shared with the original module
        self.mode = NormMode.PLAIN
        self.mean: torch.Tensor | None = None
        self.var: torch.Tensor | None = None
        # (mean, var) of the input -> (mean, var) to normalise with; set by styler.inference.temporal.
        self.smooth: Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]] | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.mode is NormMode.STOP:
            raise _Reached(x)
        if self.mode is NormMode.FIXED:
            # One set of statistics (batch 1) may serve a whole batch: frames of one clip.
            if self.mean is None or self.var is None or self.mean.shape[0] not in (1, x.shape[0]):
                raise RuntimeError("FixedStatsNorm: no statistics recorded for this batch size")
            mean, var = self.mean, self.var
        else:
            var, mean = torch.var_mean(x.float(), dim=(2, 3), keepdim=True, unbiased=False)
            if self.mode is NormMode.SMOOTH:
                if self.smooth is None:
                    raise RuntimeError("FixedStatsNorm: SMOOTH mode without a smooth function")
                mean, var = self.smooth(mean, var)
            if self.mode in (NormMode.RECORD, NormMode.SMOOTH):
                self.mean, self.var = mean, var
        y = (x - mean) * torch.rsqrt(var + self.eps)
        if self.weight is not None:
            y = y * self.weight.view(1, -1, 1, 1) + self.bias.view(1, -1, 1, 1)
        return y.to(x.dtype)


def _leaves(module: nn.Module) -> list[nn.Module]:
    """The layers of nested Sequentials in execution order."""
    if isinstance(module, nn.Sequential):
        return [leaf for child in module for leaf in _leaves(child)]
    return [module]


def _sections(net: Generator) -> tuple[nn.Sequential, nn.Sequential, nn.Sequential]:
    """Split into the encoder up to (not including) its last norm, everything from that norm
    through the residual blocks at the lowest resolution, and the decoder (upsampling, head)."""
    encoder_layers, residual, decoder = net.stages()
    encoder = _leaves(nn.Sequential(*encoder_layers))
    norms = [i for i, m in enumerate(encoder) if isinstance(m, FixedStatsNorm)]
    cut = norms[-1] if norms else len(encoder)
    return nn.Sequential(*encoder[:cut]), nn.Sequential(*encoder[cut:], *residual), nn.Sequential(*decoder)


class GlobalStatsGenerator(nn.Module):
    """A copy of a :class:`Generator` whose instance norms use statistics set from outside."""

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
        self.encoder, self.middle, self.decoder = _sections(self.net)
        # Context around an encoder tile (input pixels, a multiple of the stride so every tile
        # keeps the sampling grid) and around a decoder tile (lowest-resolution positions).
        self.encoder_margin = math.ceil(reach(self.encoder.modules()) / self.stride + 1) * self.stride
        self.decoder_margin = math.ceil(reach(self.decoder.modules())) + 1

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
    stride of slack for the sampling grid."""
    stride = generator.config.stride
    return math.ceil((reach(generator.modules()) + stride) / stride) * stride


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
                  autocast: Autocast = nullcontext, stats_size: int | None = 1024, collect: bool = True,
                  stats: TileStats = TileStats.EXACT) -> torch.Tensor:
    """Stylize ``x`` (N, 3, H, W, on any device) tile by tile on ``device``; returns float32 on
    ``x``'s device. ``stats`` says where the instance-norm statistics come from; for DOWNSCALED,
    from ``x`` shrunk to ``stats_size`` (None: full size), unless ``collect`` is False (the caller
    already collected them)."""
    check_tile(tile, model.stride)
    if stats is TileStats.EXACT:
        return exact_forward(model, x, tile, device, autocast)
    return _downscaled_forward(model, x, tile, device, autocast, stats_size, collect)


def _downscaled_forward(model: GlobalStatsGenerator, x: torch.Tensor, tile: int, device: torch.device,
                        autocast: Autocast, stats_size: int | None, collect: bool) -> torch.Tensor:
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


def _cores(section: nn.Module, src: torch.Tensor, tile: int, margin: int, device: torch.device,
           autocast: Autocast, prep: Callable[[torch.Tensor], torch.Tensor] | None = None,
           ) -> Iterator[tuple[torch.Tensor, int, int]]:
    """Run ``section`` on non-overlapping cores of ``src`` (each with ``margin`` positions of
    context) and yield each core's result (or the input of the norm in STOP mode) with its
    top-left position at the result's resolution. The cores partition ``src`` exactly once."""
    h, w = src.shape[-2:]
    for top in range(0, h, tile):
        bottom, c_top, c_bottom = min(top + tile, h), max(0, top - margin), min(h, top + tile + margin)
        for left in range(0, w, tile):
            right, c_left, c_right = min(left + tile, w), max(0, left - margin), min(w, left + tile + margin)
            crop = src[..., c_top:c_bottom, c_left:c_right].to(device, torch.float32)
            with torch.no_grad(), autocast():
                try:
                    y = section(prep(crop) if prep else crop)
                except _Reached as reached:
                    y = reached.x
            # Crops are aligned to the stride, so the scale between crop and result is exact.
            sy, sx = Fraction(y.shape[-2], c_bottom - c_top), Fraction(y.shape[-1], c_right - c_left)
            core = y[..., int((top - c_top) * sy):int((bottom - c_top) * sy),
                     int((left - c_left) * sx):int((right - c_left) * sx)]
            yield core, int(top * sy), int(left * sx)


def _measure(norm: FixedStatsNorm, section: nn.Module, src: torch.Tensor, tile: int, margin: int,
             device: torch.device, autocast: Autocast, prep: Callable[[torch.Tensor], torch.Tensor] | None) -> None:
    """Set ``norm``'s statistics to those of its input over the whole image (earlier norms fixed)."""
    norm.mode = NormMode.STOP
    total = squares = None
    count = 0
    try:
        for core, _, _ in _cores(section, src, tile, margin, device, autocast, prep):
            core = core.double()
            s, q = core.sum((2, 3)), core.square().sum((2, 3))
            total, squares = (s, q) if total is None else (total + s, squares + q)
            count += core.shape[-2] * core.shape[-1]
    finally:
        norm.mode = NormMode.FIXED
    if total is None or squares is None:
        raise RuntimeError("tiling: the measured norm was never reached")
    mean = total / count
    var = (squares / count - mean.square()).clamp_min(0.0)
    norm.mean, norm.var = (t[..., None, None].float().to(device) for t in (mean, var))


def _norms_of(section: nn.Module) -> list[FixedStatsNorm]:
    return [m for m in section.modules() if isinstance(m, FixedStatsNorm)]


def _assemble(cores: Iterator[tuple[torch.Tensor, int, int]], n: int, size: tuple[int, int],
              device: torch.device) -> torch.Tensor:
    """Write the cores into one whole tensor of spatial ``size`` on ``device``."""
    whole: torch.Tensor | None = None
    for core, top, left in cores:
        if whole is None:
            whole = torch.empty(n, core.shape[1], *size, dtype=torch.float32, device=device)
        whole[..., top:top + core.shape[-2], left:left + core.shape[-1]] = core
    assert whole is not None
    return whole


def _centre(x: torch.Tensor) -> torch.Tensor:
    return x * 2.0 - 1.0  # the generator's input transform, applied before its body


@torch.no_grad()
def exact_forward(model: GlobalStatsGenerator, x: torch.Tensor, tile: int, device: torch.device,
                  autocast: Autocast = nullcontext) -> torch.Tensor:
    """Tiled forward with every norm's statistics measured over the whole image at full
    resolution (see the module docstring): equals ``generator(x)`` to float rounding."""
    n, _, h, w = x.shape
    xp = pad_to_stride(x.float(), model.stride)
    model._set_mode(NormMode.FIXED)
    for norm in _norms_of(model.encoder):
        _measure(norm, model.encoder, xp, tile, model.encoder_margin, device, autocast, _centre)
    low_size = (xp.shape[-2] // model.stride, xp.shape[-1] // model.stride)
    low = _assemble(_cores(model.encoder, xp, tile, model.encoder_margin, device, autocast, _centre),
                    n, low_size, x.device)
    # The last encoder norm and the residual blocks run whole at the lowest resolution (a tensor
    # the size of the input image), where ordinary instance norm is exact.
    for norm in _norms_of(model.middle):
        norm.mode = NormMode.PLAIN
    with autocast():
        low = model.middle(low.to(device)).float().to(x.device)
    low_tile = tile // model.stride
    for norm in _norms_of(model.decoder):
        _measure(norm, model.decoder, low, low_tile, model.decoder_margin, device, autocast, None)
    out = _assemble(_cores(model.decoder, low, low_tile, model.decoder_margin, device, autocast),
                    n, xp.shape[-2:], x.device)
    return finish_output(out, xp, model.net.config.input_skip)[..., :h, :w]
