"""Feed-forward style generator.

Follows the image transformation network of Johnson, Alahi & Fei-Fei, "Perceptual Losses for
Real-Time Style Transfer and Super-Resolution" (ECCV 2016): reflection padding, instance
normalisation (Ulyanov et al. 2016), strided downsampling, residual blocks at low resolution,
upsampling back to full resolution.

Deliberate departures, all for speed on CPUs and small GPUs (see docs/performance.md):
  * 3x3 stem and head convolutions instead of 9x9 (Johnson's 9x9 ends cost a large share of
    the FLOPs at full resolution).
  * A pixel-unshuffle stem instead of the first strided convolution, and a quarter of the
    channels: 16 at 1/2 and 32 in the 5 residual blocks at Johnson's 1/4, instead of 32-64-128.
    ``GeneratorConfig.num_downsamples=3`` adds a halving and puts the blocks at 1/8 with 64
    channels: the same FLOPs in the blocks on a coarser grid, larger strokes, twice the reach.
  * Upsampling is bilinear (default) or nearest-neighbour x2 followed by a 3x3 convolution,
    never a transposed convolution (Odena et al., "Deconvolution and Checkerboard Artifacts",
    Distill 2016). Johnson et al. and Odena et al. use nearest; in offline training it painted a
    plaid of thin lines that bilinear removes (docs/offline-quality.md). The channel reduction
    happens before the upsample with a 1x1 convolution so the 3x3 runs on fewer channels at the
    higher resolution. After a bilinear upsample the convolution pads by replication, which
    keeps the sub-pixel inference path below exact at the borders.
  * No global input skip by default (``GeneratorConfig.input_skip``): the output is
    ``(tanh(head) + 1) / 2`` as in Johnson et al. With the skip the head's output is added to
    the input, which keeps the generator near the identity, a colour filter, whatever the loss
    weights; weights files that set it load with it.
  * Any input size is accepted: the input is reflection-padded to a multiple of the stride and
    the output cropped back.
  * At inference (:class:`styler.nn.fast.FastGenerator`, tiling, export) the photo is first
    extended by :data:`BORDER` pixels of point reflection on every side and the result cropped
    back (:class:`Border`): a trained network paints its own edges darker or lighter than the
    rest (docs/performance.md, "Borders"), and this way no edge of the photo is an edge of the
    network's input. Training runs without it, as the bundled styles were trained.
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path
from typing import Iterable, List

import torch
import torch.nn.functional as F
from torch import nn

from styler.config import GeneratorConfig, Upsample
from styler.errors import WeightsError
from styler.io.weights import WeightsInfo, read_weights


def _conv(in_ch: int, out_ch: int, kernel: int, stride: int = 1, replicate: bool = False) -> nn.Sequential:
    pad = nn.ReplicationPad2d(kernel // 2) if replicate else nn.ReflectionPad2d(kernel // 2)
    return nn.Sequential(pad, nn.Conv2d(in_ch, out_ch, kernel, stride=stride))


class ConvNormAct(nn.Sequential):
    """Reflection- (or replication-) padded convolution, affine instance norm, ReLU."""

    def __init__(self, in_ch: int, out_ch: int, kernel: int = 3, stride: int = 1, replicate: bool = False) -> None:
        super().__init__(
            _conv(in_ch, out_ch, kernel, stride, replicate),
            nn.InstanceNorm2d(out_ch, affine=True),
            nn.ReLU(inplace=True),
        )


class ResidualBlock(nn.Module):
    """Two 3x3 conv + instance-norm layers with an identity skip (He et al. 2016)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            ConvNormAct(channels, channels),
            _conv(channels, channels, 3),
            nn.InstanceNorm2d(channels, affine=True),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class Blur(nn.Module):
    """Fixed depthwise 3x3 binomial low-pass filter ([1, 2, 1] outer itself, / 16), reflection
    padded; no parameters, so it adds nothing to the weights file."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        taps = torch.tensor([1.0, 2.0, 1.0])
        kernel = (taps[:, None] * taps[None, :]) / 16.0
        self.register_buffer("kernel", kernel.expand(channels, 1, 3, 3).contiguous(), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(F.pad(x, (1, 1, 1, 1), mode="reflect"), self.kernel.to(x.dtype), groups=x.shape[1])


def _upsample(mode: Upsample) -> nn.Upsample:
    if mode is Upsample.BILINEAR:
        return nn.Upsample(scale_factor=2.0, mode="bilinear", align_corners=False)
    return nn.Upsample(scale_factor=2.0, mode="nearest")


class UpBlock(nn.Module):
    """1x1 channel reduction, x2 upsample, 3x3 conv: no checkerboard by construction."""

    def __init__(self, in_ch: int, out_ch: int, mode: Upsample = Upsample.BILINEAR) -> None:
        super().__init__()
        self.mode = mode
        self.reduce = nn.Conv2d(in_ch, out_ch, 1)
        self.up = _upsample(mode)
        self.conv = ConvNormAct(out_ch, out_ch, replicate=mode is Upsample.BILINEAR)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(self.up(self.reduce(x)))


def _encoder(cfg: GeneratorConfig) -> tuple[list[nn.Module], int]:
    """The downsampling layers and their output channels: a pixel-unshuffle stem, then
    ``num_downsamples - 1`` strided convolutions (each mirrored by an UpBlock)."""
    c = cfg.base_channels
    # Space-to-depth (lossless) replaces the first strided conv: no layer runs at full
    # resolution except the head, where most of the memory traffic would otherwise be.
    layers: list[nn.Module] = [*([Blur(3)] if cfg.antialias else []), nn.PixelUnshuffle(2), ConvNormAct(12, c)]
    for _ in range(cfg.num_downsamples - 1):
        if cfg.antialias:
            layers.append(Blur(c))
        layers.append(ConvNormAct(c, c * 2, 3, stride=2))
        c *= 2
    return layers, c


class Generator(nn.Module):
    """Image-to-image generator; input and output are RGB in [0, 1], shape (N, 3, H, W)."""

    def __init__(self, config: GeneratorConfig | None = None) -> None:
        super().__init__()
        self.config = config or GeneratorConfig()
        cfg = self.config
        layers, c = _encoder(cfg)
        self._stage_sizes = (len(layers), cfg.num_residual)
        layers.extend(ResidualBlock(c) for _ in range(cfg.num_residual))
        for _ in range(cfg.num_downsamples - 1):
            layers.append(UpBlock(c, c // 2, cfg.upsample))
            c //= 2
        # The pixel-unshuffle stem is undone by a plain upsample before the head.
        layers.append(_upsample(cfg.upsample))
        self.body = nn.Sequential(*layers)
        self.head = _conv(c, 3, 3, replicate=cfg.upsample is Upsample.BILINEAR)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _padded_forward(self.body, self.head, self.config, x)

    def stages(self) -> tuple[list[nn.Module], list[nn.Module], list[nn.Module]]:
        """The layers split where the resolution is lowest: the encoder, the residual blocks (at
        1/stride) and the decoder ending with the head. Tiling runs them separately."""
        layers, (encoder, residual) = list(self.body), self._stage_sizes
        return layers[:encoder], layers[encoder:encoder + residual], [*layers[encoder + residual:], self.head]


def reach(modules: Iterable[nn.Module]) -> Fraction:
    """Reach of a sequence of this generator's layers (how many input positions beyond an output
    position can influence it), in units of its input's positions; what tiling needs for its
    margins. Walks the modules in execution order (true for :class:`Generator`: an UpBlock's
    upsample halves the scale before its 3x3 conv, and its 1x1 reduction has no reach)."""
    scale, radius = Fraction(1), Fraction(0)
    for module in modules:
        if isinstance(module, nn.PixelUnshuffle):
            scale *= module.downscale_factor
        elif isinstance(module, nn.Conv2d):
            radius += (module.kernel_size[0] // 2) * module.dilation[0] * scale
            scale *= module.stride[0]
        elif isinstance(module, Blur):
            radius += scale
        elif isinstance(module, nn.Upsample):
            if module.mode == "bilinear":
                radius += scale  # interpolation reaches one position further, before the doubling
            scale /= 2
        elif isinstance(module, nn.PixelShuffle):  # the fast path's sub-pixel convolutions
            scale /= module.upscale_factor
    return radius


def finish_output(head_out: torch.Tensor, x: torch.Tensor, input_skip: bool) -> torch.Tensor:
    """Turn the head's output into the image: over the (padded) input ``x`` when the generator
    has the input skip, else squashed into [0, 1] with tanh (Johnson et al.'s output layer)."""
    if input_skip:
        return head_out + x
    return (torch.tanh(head_out) + 1.0) * 0.5


def pad_to_stride(x: torch.Tensor, stride: int) -> torch.Tensor:
    """Pad the bottom and right to a multiple of ``stride``, and to at least 2 positions at the
    lowest resolution (instance norm needs more than one spatial element). The one place for
    this: the generator, tiling and export all pad with it (export scripts it, hence the plain
    arithmetic and branches that ``torch.jit.script`` keeps symbolic)."""
    h, w = x.shape[-2], x.shape[-1]
    pad_h = max(h + (-h) % stride, 2 * stride) - h
    pad_w = max(w + (-w) % stride, 2 * stride) - w
    if pad_h == 0 and pad_w == 0:
        return x
    if pad_h < h and pad_w < w:
        return F.pad(x, [0, pad_w, 0, pad_h], mode="reflect")
    # Reflection needs the pad to be smaller than the side; replication covers tiny images.
    return F.pad(x, [0, pad_w, 0, pad_h], mode="replicate")


# Pixels of point reflection around the photo at inference. Averaged over 8 smooth random
# images, the bundled styles paint their outer rows up to 27 levels (of 255) darker than the
# same content inside a larger image; with 24 every style stays within 4.2, inside the spread of
# its own interior rows (3-6); 16 leaves starry-video and matisse outside it, and 32 does no
# better than 24 (docs/performance.md, "Borders"). A multiple of 8, the largest bundled stride,
# so the photo keeps the sampling grid it has without the margin.
BORDER = 24


def _fold(v: torch.Tensor) -> torch.Tensor:
    """Values beyond 0 or 1 reflected back into [0, 1] (1 - |1 - |v||), in place. Clamping instead
    leaves flat patches where a bright or dark edge is continued, and the network darkens next to
    them (twice the remaining band of starry-video, docs/performance.md)."""
    return v.abs_().sub_(1).abs_().neg_().add_(1).clamp_(0, 1)


def _repeat(x: torch.Tensor, dim: int, index: int, count: int) -> torch.Tensor:
    """Position ``index`` of ``x`` repeated ``count`` times along ``dim`` (an index, not expand:
    the ONNX exporter cannot take a shape computed in the scripted function)."""
    return x.index_select(dim, torch.arange(count, device=x.device) * 0 + index)


def _extended(x: torch.Tensor, dim: int, before: int, after: int, start: int, stop: int) -> torch.Tensor:
    """Positions ``[start, stop)`` of ``x`` extended along ``dim`` by ``before`` and ``after``
    positions of point reflection: twice the edge value minus the mirror image (folded into
    [0, 1]). A side too short to mirror ``before`` or ``after`` positions repeats its edges."""
    n = x.size(dim)
    mirror = before < n and after < n
    pieces: List[torch.Tensor] = []
    a, b = start, min(stop, before)
    if a < b:
        edge = x.narrow(dim, 0, 1)
        if mirror:
            pieces.append(_fold(2 * edge - x.narrow(dim, before - b + 1, b - a).flip([dim])))
        else:
            pieces.append(_repeat(x, dim, 0, b - a))
    a, b = max(start, before), min(stop, before + n)
    if a < b:
        pieces.append(x.narrow(dim, a - before, b - a))
    a, b = max(start, before + n), stop
    if a < b:
        edge = x.narrow(dim, n - 1, 1)
        first, last = a - (before + n - 1), b - (before + n - 1)
        if mirror:
            pieces.append(_fold(2 * edge - x.narrow(dim, n - last, last - first).flip([dim])))
        else:
            pieces.append(_repeat(x, dim, n - 1, b - a))
    return torch.cat(pieces, dim)


def padded_size(length: int, stride: int, margin: int) -> int:
    """``length`` plus ``margin`` on both sides, rounded up to a multiple of ``stride``, and at
    least 2 positions at the lowest resolution (instance norm needs more than one)."""
    total = length + 2 * margin
    return max(total + (-total) % stride, 2 * stride)


def extend_border(x: torch.Tensor, stride: int, margin: int) -> torch.Tensor:
    """``x`` (N, C, H, W) extended by ``margin`` on every side and on the bottom and right to
    :func:`padded_size`, by point reflection (:class:`Border`; export scripts this function)."""
    h, w = x.shape[-2], x.shape[-1]
    ph, pw = padded_size(h, stride, margin), padded_size(w, stride, margin)
    rows = _extended(x, -2, margin, ph - h - margin, 0, ph)
    return _extended(rows, -1, margin, pw - w - margin, 0, pw)


class Border:
    """An (H, W) image extended for inference by ``margin`` on every side (and on the bottom and
    right to a multiple of ``stride``) by point reflection, rows first, then columns: a value
    beyond an edge is twice the edge value minus its mirror image, which continues the edge's
    gradient. A plain mirror puts a ridge along every edge, and the network paints the ridge
    (up to 9 levels, docs/performance.md). :meth:`rows` gives any band of rows of the extended
    image, with the same values as :func:`extend_border`, so tiling builds it stripe by stripe."""

    def __init__(self, height: int, width: int, stride: int, margin: int = BORDER) -> None:
        self.height, self.width, self.margin = height, width, margin
        self.padded_height = padded_size(height, stride, margin)
        self.padded_width = padded_size(width, stride, margin)

    def rows(self, x: torch.Tensor, start: int, stop: int) -> torch.Tensor:
        """Rows ``[start, stop)`` of the extended ``x`` (N, C, H, W), every column."""
        m = self.margin
        band = _extended(x, -2, m, self.padded_height - self.height - m, start, stop)
        return _extended(band, -1, m, self.padded_width - self.width - m, 0, self.padded_width)

    def crop(self, y: torch.Tensor) -> torch.Tensor:
        """The photo's own pixels of an output of the extended image."""
        m = self.margin
        return y[..., m:m + self.height, m:m + self.width]


def _padded_forward(body: nn.Module, head: nn.Module, config: GeneratorConfig, x: torch.Tensor,
                    margin: int = 0) -> torch.Tensor:
    """The generator's forward pass, shared by :class:`Generator` (``margin`` 0: as trained) and
    :class:`FastGenerator` (``margin``: :class:`Border`'s extension, for inference)."""
    if x.ndim != 4 or x.shape[1] != 3:
        raise ValueError(f"expected a (N, 3, H, W) tensor, got shape {tuple(x.shape)}")
    h, w = x.shape[-2:]
    if margin:
        x = extend_border(x, config.stride, margin)
        crop = Border(h, w, config.stride, margin).crop
    else:
        x = pad_to_stride(x, config.stride)
        crop = lambda y: y[..., :h, :w]  # noqa: E731
    # Centre the [0, 1] input so the first conv sees zero-mean data.
    return crop(finish_output(head(body(x * 2.0 - 1.0)), x, config.input_skip))


def load_generator(path: Path, device: torch.device | str = "cpu") -> tuple[Generator, WeightsInfo]:
    """Build the generator a weights file's header describes and load its weights (no pickle)."""
    state, info = read_weights(path)
    model = Generator(info.generator)
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing or unexpected:
        raise WeightsError(f"{path}: weights do not match the architecture in its metadata "
                           f"(missing {missing[:3]}, unexpected {unexpected[:3]})")
    bad = [k for k, v in state.items() if v.shape != expected[k].shape]
    if bad:
        raise WeightsError(f"{path}: tensor {bad[0]} has shape {tuple(state[bad[0]].shape)}, "
                           f"expected {tuple(expected[bad[0]].shape)}")
    model.load_state_dict(state)
    return model.to(device).eval(), info
