"""Stylize images of any size: the network streamed through horizontal stripes, with
statistics of the whole image.

Instance normalisation makes the generator non-local: every output pixel depends on per-channel
means and variances over the whole image, so pieces stylized on their own would each get their
own colour cast. Here every ``InstanceNorm2d`` is swapped for :class:`FixedStatsNorm`, which
normalises with statistics set from outside. With fixed statistics the network is local
(convolutions, affine normalisation, ReLU, upsampling), so a stripe that carries a halo of rows
at least the reach of its layers computes exactly what the whole-image pass would. Stripes run
the layers of :class:`styler.nn.fast.FastGenerator` on the photo extended by its
:class:`~styler.nn.generator.Border`, the rows of which are built stripe by stripe.

The network goes through in three parts (:func:`streamed_forward`):

* encoder, full resolution -> lowest: stripes of the input; each encoder norm but the last is
  measured by a pass that runs only the layers before it; a last pass writes the input of the
  last norm into a whole buffer at the lowest resolution.
* residual blocks, at the lowest resolution, layer by layer over two whole buffers (the block's
  input and one scratch buffer, which each convolution overwrites in place keeping a carry of
  the rows the next stripe still needs): every norm's input is complete before it is used, so
  its statistics are exact.
* decoder, lowest -> full resolution: stripes of the buffer; each decoder norm is measured by a
  pass up to it; the last pass writes the output image.

Where the statistics come from (:class:`styler.config.TileStats`): EXACT measures them as above,
so the output equals the whole-image pass to float rounding; DOWNSCALED takes every norm's from
one pass over a copy shrunk to ``stats_size`` and skips the measuring passes (faster, approximate).
Memory beyond the input and output images: the two buffers (each ``C / stride**2`` floats per
input pixel) and one stripe's activations; time: linear in the pixels (docs/performance.md).
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
from styler.nn.fast import FastGenerator, instance_stats, moment_sums, normalize
from styler.nn.generator import BORDER, Border, finish_output, reach

MIN_TILE = 64

Autocast = Callable[[], AbstractContextManager[object]]
Layers = list[nn.Module]


class NormMode(enum.Enum):
    PLAIN = "plain"    # ordinary instance norm over the input it sees
    RECORD = "record"  # ordinary instance norm, and keep its statistics
    FIXED = "fixed"    # normalise with the recorded statistics
    SMOOTH = "smooth"  # pass the input's statistics through ``smooth`` (inference.temporal), use and keep them


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
        if self.mode is NormMode.FIXED:
            # One set of statistics (batch 1) may serve a whole batch: frames of one clip.
            if self.mean is None or self.var is None or self.mean.shape[0] not in (1, x.shape[0]):
                raise RuntimeError("FixedStatsNorm: no statistics recorded for this batch size")
            mean, var = self.mean, self.var
        else:
            mean, var = instance_stats(x)
            if self.mode is NormMode.SMOOTH:
                if self.smooth is None:
                    raise RuntimeError("FixedStatsNorm: SMOOTH mode without a smooth function")
                mean, var = self.smooth(mean, var)
            if self.mode in (NormMode.RECORD, NormMode.SMOOTH):
                self.mean, self.var = mean, var
        return normalize(x, mean, var, self.weight, self.bias, self.eps)


def _leaves(module: nn.Module) -> Layers:
    """The layers of nested Sequentials in execution order."""
    if isinstance(module, nn.Sequential):
        return [leaf for child in module for leaf in _leaves(child)]
    return [module]


def _split(layers: Layers) -> list[Layers]:
    """``layers`` cut before every norm: [before the first norm, from it to the next, ...]."""
    parts: list[Layers] = [[]]
    for layer in layers:
        if isinstance(layer, FixedStatsNorm):
            parts.append([])
        parts[-1].append(layer)
    return parts


def _reach(layers: Layers) -> Fraction:
    return reach(module for layer in layers for module in layer.modules())


def _joined(parts: list[Layers]) -> Layers:
    return [layer for part in parts for layer in part]


def _halo(layers: Layers, slack: int = 1) -> int:
    return math.ceil(_reach(layers)) + slack


class GlobalStatsGenerator(nn.Module):
    """A copy of a :class:`Generator` whose instance norms use statistics set from outside, run
    through its fast path on the photo extended by ``margin`` (:class:`~styler.nn.generator.Border`)."""

    def __init__(self, generator: Generator, margin: int = BORDER) -> None:
        super().__init__()
        self.net = copy.deepcopy(generator).eval()
        self.stride, self.margin = generator.config.stride, margin
        self.norms: list[FixedStatsNorm] = []
        for parent in list(self.net.modules()):
            for name, child in parent.named_children():
                if isinstance(child, nn.InstanceNorm2d):
                    fixed = FixedStatsNorm(child)
                    setattr(parent, name, fixed)
                    self.norms.append(fixed)
        # The fast path over the same layers: it shares their FixedStatsNorms.
        self.fast = FastGenerator(self.net, margin).eval()
        # The fast body is the plain one less its final upsample, which the fast head takes in.
        body = list(self.fast.body)
        encoder, residual = (len(stage) for stage in self.net.stages()[:2])
        self.encoder = _leaves(nn.Sequential(*body[:encoder]))
        self.blocks = body[encoder:encoder + residual]
        self.decoder = [*_leaves(nn.Sequential(*body[encoder + residual:])), self.fast.head]
        # Rows of context around an encoder stripe (input pixels, a multiple of the stride so
        # every stripe keeps the sampling grid) and a decoder stripe (lowest-resolution rows).
        self.encoder_halo = math.ceil(_reach(self.encoder) / self.stride + 1) * self.stride
        self.decoder_halo = _halo(self.decoder)

    def _set_mode(self, mode: NormMode) -> None:
        for norm in self.norms:
            norm.mode = mode

    @torch.no_grad()
    def collect(self, x: torch.Tensor) -> None:
        """Record every layer's statistics from a (downscaled) pass over the whole image ``x``."""
        self._set_mode(NormMode.RECORD)
        try:
            self.fast(x)
        finally:
            self._set_mode(NormMode.FIXED)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fast(x)


class _Moments:
    """Per-(sample, channel) mean and variance of a tensor seen in pieces: float64 sums."""

    def __init__(self) -> None:
        self.count = 0
        self.sums: tuple[torch.Tensor, torch.Tensor] | None = None

    def add(self, piece: torch.Tensor) -> None:
        sums = moment_sums(piece)
        self.sums = sums if self.sums is None else (self.sums[0] + sums[0], self.sums[1] + sums[1])
        self.count += piece.shape[-2] * piece.shape[-1]

    def set(self, norm: FixedStatsNorm, device: torch.device) -> None:
        if self.sums is None:
            raise RuntimeError("tiling: the measured norm saw no positions")
        mean = self.sums[0] / self.count
        norm.mean = mean.float().to(device)
        norm.var = (self.sums[1] / self.count - mean.square()).clamp_min(0.0).float().to(device)


def check_tile(tile: int, stride: int) -> None:
    if tile < MIN_TILE or tile % stride:
        raise ConfigError(f"tile size must be a multiple of {stride} and at least {MIN_TILE}, got {tile}")


def stripe_rows(tile: int, width: int, stride: int) -> int:
    """Rows of a full-resolution stripe: about ``tile * tile`` pixels, a multiple of ``stride``."""
    return max(stride, tile * tile // max(width, 1) // stride * stride)


class _Stream:
    """One batch of images through a :class:`GlobalStatsGenerator`, stripe by stripe."""

    def __init__(self, model: GlobalStatsGenerator, x: torch.Tensor, tile: int, device: torch.device,
                 autocast: Autocast, measure: bool) -> None:
        self.model, self.x, self.device, self.autocast, self.measure = model, x, device, autocast, measure
        self.border = Border(*x.shape[-2:], model.stride, model.margin)
        self.rows = stripe_rows(tile, self.border.padded_width, model.stride)
        self.low_rows = self.rows // model.stride

    def _run(self, layers: Layers, piece: torch.Tensor) -> torch.Tensor:
        with torch.no_grad(), self.autocast():
            for layer in layers:
                piece = layer(piece)
        return piece

    def _input(self, start: int, stop: int) -> torch.Tensor:
        """Rows of the extended photo, centred as the generator's first layer expects."""
        return self.border.rows(self.x, start, stop).to(self.device, torch.float32) * 2.0 - 1.0

    def _stripes(self, layers: Layers, height: int, rows: int, halo: int,
                 source: Callable[[int, int], torch.Tensor]) -> Iterator[tuple[torch.Tensor, int, int]]:
        """``layers`` over stripes of ``rows`` rows of a source ``height`` rows high, each with
        ``halo`` rows of context: yields (the stripe's own rows of the result, their first row
        and the result's rows per source row)."""
        for start in range(0, height, rows):
            stop = min(start + rows, height)
            first, end = max(0, start - halo), min(height, stop + halo)
            y = self._run(layers, source(first, end))
            scale = Fraction(y.shape[-2], end - first)  # exact: stripes keep the sampling grid
            yield y[..., int((start - first) * scale):int((stop - first) * scale), :], int(start * scale), scale

    def _measure_norms(self, parts: list[Layers], count: int, height: int, rows: int, halo: int,
                       source: Callable[[int, int], torch.Tensor]) -> None:
        """Set the statistics of the norms that start ``parts[1:count]``, in order, each by a pass
        of the layers before it over the whole image (the earlier norms already set)."""
        for i in range(1, count if self.measure else 1):
            moments = _Moments()
            for core, _, _ in self._stripes(_joined(parts[:i]), height, rows, halo, source):
                moments.add(core)
            moments.set(parts[i][0], self.device)

    def encode(self) -> torch.Tensor:
        """The encoder's output, whole, at the lowest resolution; every encoder norm measured."""
        m, b = self.model, self.border
        parts = _split(m.encoder)  # a norm follows the encoder's first convolution at least
        self._measure_norms(parts, len(parts) - 1, b.padded_height, self.rows, m.encoder_halo, self._input)
        last = parts[-1][0]  # its input is built whole, and measured on the way
        low = torch.empty(self.x.shape[0], last.weight.numel(), b.padded_height // m.stride,
                          b.padded_width // m.stride, dtype=torch.float32, device=self.x.device)
        moments = _Moments()
        for core, top, _ in self._stripes(_joined(parts[:-1]), b.padded_height, self.rows, m.encoder_halo,
                                          self._input):
            low[..., top:top + core.shape[-2], :] = core.to(low.device)
            moments.add(core)
        if self.measure:
            moments.set(last, self.device)
        self._pass(parts[-1], low, low, 0)  # that norm and its ReLU, in place
        return low

    def _pass(self, layers: Layers, src: torch.Tensor, dst: torch.Tensor, halo: int,
              norm: FixedStatsNorm | None = None, add: bool = False) -> None:
        """``dst`` = ``layers(src)`` (or ``dst +=`` it) at one resolution, stripe by stripe;
        ``dst`` may be ``src``: the rows the next stripe reads above itself are kept aside before
        they are overwritten. ``norm``: measure its statistics on the result."""
        height, carry, moments = src.shape[-2], None, _Moments()
        for start in range(0, height, self.low_rows):
            stop = min(start + self.low_rows, height)
            first, end = max(0, start - halo), min(height, stop + halo)
            # carry: rows [first, start) of src as they were before the previous stripe wrote them
            piece = src[..., first:end, :] if carry is None else torch.cat([carry, src[..., start:end, :]], -2)
            core = self._run(layers, piece.to(self.device))[..., start - first:stop - first, :].float()
            if norm is not None and self.measure:
                moments.add(core)
            if dst is src and halo:
                carry = src[..., max(0, stop - halo):stop, :].clone()
            if add:
                dst[..., start:stop, :] += core.to(dst.device)
            else:
                dst[..., start:stop, :] = core.to(dst.device)
        if norm is not None and self.measure:
            moments.set(norm, self.device)

    def middle(self, low: torch.Tensor) -> torch.Tensor:
        """The residual blocks, layer by layer over ``low`` and one scratch buffer."""
        scratch = torch.empty_like(low) if self.model.blocks else low
        for block in self.model.blocks:
            parts = _split(_leaves(block.body))
            for i, part in enumerate(parts[:-1]):
                self._pass(part, low if i == 0 else scratch, scratch, _halo(part, slack=0), parts[i + 1][0])
            self._pass(parts[-1], scratch, low, _halo(parts[-1], slack=0), add=True)
        return low

    def decode(self, low: torch.Tensor) -> torch.Tensor:
        """The decoder from the whole lowest-resolution ``low`` to the output image."""
        m, height = self.model, low.shape[-2]

        def source(start: int, stop: int) -> torch.Tensor:
            return low[..., start:stop, :].to(self.device)

        parts = _split(m.decoder)
        self._measure_norms(parts, len(parts), height, self.low_rows, m.decoder_halo, source)
        n, b = self.x.shape[0], self.border
        out = torch.empty(n, 3, b.height, b.width, dtype=torch.float32, device=self.x.device)
        for core, top, _ in self._stripes(m.decoder, height, self.low_rows, m.decoder_halo, source):
            rows = range(max(top, b.margin), min(top + core.shape[-2], b.margin + b.height))
            if not rows:
                continue
            skip = self.border.rows(self.x, top, top + core.shape[-2]).to(self.device, torch.float32) \
                if m.net.config.input_skip else core
            image = finish_output(core.float(), skip, m.net.config.input_skip)
            out[..., rows.start - b.margin:rows.stop - b.margin, :] = \
                image[..., rows.start - top:rows.stop - top, b.margin:b.margin + b.width].to(out.device)
        return out


@torch.no_grad()
def streamed_forward(model: GlobalStatsGenerator, x: torch.Tensor, tile: int, device: torch.device,
                     autocast: Autocast = nullcontext, measure: bool = True) -> torch.Tensor:
    """``model`` over ``x`` (N, 3, H, W, on any device) in stripes of about ``tile * tile``
    pixels on ``device``; float32 on ``x``'s device. ``measure``: every norm's statistics from
    the whole image (EXACT); otherwise the norms keep the statistics they hold (DOWNSCALED,
    inference.temporal)."""
    model._set_mode(NormMode.FIXED)
    stream = _Stream(model, x, tile, device, autocast, measure)
    return stream.decode(stream.middle(stream.encode()))


def exact_forward(model: GlobalStatsGenerator, x: torch.Tensor, tile: int, device: torch.device,
                  autocast: Autocast = nullcontext) -> torch.Tensor:
    """Stripes with every norm's statistics measured over the whole image: equals ``model(x)``
    (the whole-image fast path) to float rounding."""
    return streamed_forward(model, x, tile, device, autocast, measure=True)


def downscale(x: torch.Tensor, longer: int) -> torch.Tensor:
    """Antialiased bilinear resize so the longer side is at most ``longer``."""
    h, w = x.shape[-2:]
    if max(h, w) <= longer:
        return x
    scale = longer / max(h, w)
    size = (max(1, round(h * scale)), max(1, round(w * scale)))
    return F.interpolate(x, size=size, mode="bilinear", antialias=True, align_corners=False)


def tiled_forward(model: GlobalStatsGenerator, x: torch.Tensor, tile: int, device: torch.device,
                  autocast: Autocast = nullcontext, stats_size: int | None = 1024, collect: bool = True,
                  stats: TileStats = TileStats.EXACT) -> torch.Tensor:
    """Stylize ``x`` (N, 3, H, W, on any device) in stripes of about ``tile * tile`` pixels on
    ``device``; returns float32 on ``x``'s device. ``stats`` says where the instance-norm
    statistics come from; for DOWNSCALED, from ``x`` shrunk to ``stats_size`` (None: full size),
    unless ``collect`` is False (the caller already set them)."""
    check_tile(tile, model.stride)
    if stats is TileStats.EXACT:
        return exact_forward(model, x, tile, device, autocast)
    if collect:
        small = downscale(x.float(), stats_size) if stats_size else x.float()
        with autocast():
            model.collect(small.to(device))
    return streamed_forward(model, x, tile, device, autocast, measure=False)
