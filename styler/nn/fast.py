"""Inference fast path: the same generator with its upsample-then-convolve layers rewritten.

:class:`FastGenerator` gives the outputs of :class:`styler.nn.generator.Generator` within float
rounding, faster and in less memory (docs/performance.md); the Stylizer runs it, on the photo
extended by :data:`~styler.nn.generator.BORDER` pixels (``margin=0`` runs it as trained).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from styler.config import Upsample
from styler.nn.generator import BORDER, Generator, UpBlock, _padded_forward

# --- Inference fast path -------------------------------------------------------------------
#
# ``nearest x2 upsample -> reflection pad 1 -> 3x3 conv`` equals ``replicate pad 1 -> 3x3 conv
# with 4x the output channels -> pixel shuffle`` at the low resolution: each of the four output
# phases sees a 3x3 low-resolution window whose weights are sums of the original taps, and a
# reflected row next to the upsampled border is a copy of the low-resolution border row. Same
# FLOPs, but the upsampled and padded high-resolution tensors are never built; at 1024x1024
# that removes the two largest memory passes of the network (see docs/performance.md).
# Bilinear x2 (align_corners=False) mixes the two nearest low-res rows 3:1, so each phase still
# sees a 3x3 low-res window; its border rows equal a replicated low-res row, hence the
# replication padding after bilinear upsampling in the plain network.

# _PHASE[mode][a][i, j]: how much original tap j (of 3) contributes to low-res tap i for phase a.
_PHASE = {
    Upsample.NEAREST: torch.tensor([[[1.0, 0.0, 0.0], [0.0, 1.0, 1.0], [0.0, 0.0, 0.0]],
                                    [[0.0, 0.0, 0.0], [1.0, 1.0, 0.0], [0.0, 0.0, 1.0]]]),
    Upsample.BILINEAR: torch.tensor([[[0.75, 0.25, 0.0], [0.25, 0.75, 0.75], [0.0, 0.0, 0.25]],
                                     [[0.25, 0.0, 0.0], [0.75, 0.75, 0.25], [0.0, 0.25, 0.75]]]),
}


def subpixel_weight(weight: torch.Tensor, mode: Upsample = Upsample.NEAREST) -> torch.Tensor:
    """(O, C, 3, 3) kernel applied after x2 upsampling -> (4*O, C, 3, 3) kernel applied before
    :func:`torch.nn.functional.pixel_shuffle`, channels ordered as pixel_shuffle expects."""
    phase = _PHASE[mode].to(weight)
    # out[o, a, b, c, i, j] = sum_kl P[a, i, k] W[o, c, k, l] P[b, j, l]
    out = torch.einsum("aik,ockl,bjl->oabcij", phase, weight, phase)
    return out.reshape(weight.shape[0] * 4, *weight.shape[1:])


class SubpixelConv(nn.Module):
    """Drop-in for ``x2 upsample, pad 1, 3x3 conv`` without the upsample."""

    def __init__(self, conv: nn.Conv2d, mode: Upsample = Upsample.NEAREST) -> None:
        super().__init__()
        if conv.kernel_size != (3, 3) or conv.stride != (1, 1):
            raise ValueError("SubpixelConv needs a 3x3 stride-1 convolution")
        self.conv = nn.Conv2d(conv.in_channels, conv.out_channels * 4, 3, bias=conv.bias is not None)
        self.shuffle = nn.PixelShuffle(2)  # a module, so styler.nn.generator.reach sees the doubling
        with torch.no_grad():
            self.conv.weight.copy_(subpixel_weight(conv.weight, mode))
            if conv.bias is not None:
                self.conv.bias.copy_(conv.bias.repeat_interleave(4))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.shuffle(self.conv(F.pad(x, (1, 1, 1, 1), mode="replicate")))


def moment_sums(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-(sample, channel) sums of ``x`` and of its square over the positions of an (N, C, H, W)
    tensor, float64 (N, C, 1, 1): float32 sums of each row, added up in float64. As accurate as
    ``torch.var_mean`` (relative 1e-8 on 2048x2048) and about 10x faster on a CPU, where
    ``var_mean`` and instance norm run the slow per-channel path."""
    x = x.float()
    total = x.sum(-1).double().sum(-1)
    squares = torch.einsum("nchw,nchw->nch", x, x).double().sum(-1)
    return total[..., None, None], squares[..., None, None]


def instance_stats(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-(sample, channel) mean and (biased) variance, float32 (N, C, 1, 1)."""
    total, squares = moment_sums(x)
    count = x.shape[-2] * x.shape[-1]
    mean = total / count
    return mean.float(), (squares / count - mean.square()).clamp_min(0.0).float()


def normalize(x: torch.Tensor, mean: torch.Tensor, var: torch.Tensor, weight: torch.Tensor | None,
              bias: torch.Tensor | None, eps: float) -> torch.Tensor:
    """``(x - mean) / sqrt(var + eps) * weight + bias`` with (N or 1, C, 1, 1) statistics: one
    ``batch_norm`` in eval mode over the (1, N*C, H, W) view, a single pass over ``x``."""
    n, c = x.shape[:2]
    # batch_norm takes no gradient through its statistics, and wants float32 NCHW.
    if x.dtype != torch.float32 or not x.is_contiguous() or mean.requires_grad or var.requires_grad:
        y = (x - mean) * torch.rsqrt(var + eps)
        if weight is not None and bias is not None:
            y = y * weight.view(1, -1, 1, 1) + bias.view(1, -1, 1, 1)
        return y.to(x.dtype)
    mean, var = (t.float().expand(n, c, 1, 1).reshape(-1) for t in (mean, var))
    weight = None if weight is None else weight.float().repeat(n)
    bias = None if bias is None else bias.float().repeat(n)
    y = F.batch_norm(x.view(1, n * c, *x.shape[2:]), mean, var, weight, bias, False, 0.0, eps)
    return y.view(x.shape)


class FastInstanceNorm(nn.Module):
    """``nn.InstanceNorm2d`` (affine, no running statistics) through :func:`instance_stats` and
    :func:`normalize`: the same outputs within float rounding, several times faster on a CPU."""

    def __init__(self, norm: nn.InstanceNorm2d) -> None:
        super().__init__()
        self.eps, self.weight, self.bias = norm.eps, norm.weight, norm.bias

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return normalize(x, *instance_stats(x), self.weight, self.bias, self.eps)


def _fast_norms(module: nn.Module) -> None:
    for parent in list(module.modules()):
        for name, child in parent.named_children():
            if isinstance(child, nn.InstanceNorm2d) and child.affine and not child.track_running_stats:
                setattr(parent, name, FastInstanceNorm(child))


def _fast_up_block(block: UpBlock) -> nn.Sequential:
    pad_conv, norm, act = block.conv
    return nn.Sequential(block.reduce, SubpixelConv(pad_conv[1], block.mode), norm, act)


class FastGenerator(nn.Module):
    """Inference-only equivalent of a :class:`Generator` (same outputs within float rounding).

    Built from a trained generator with :meth:`from_generator`; it shares no state with it and
    has its own state_dict layout, so save and load the plain :class:`Generator` and convert
    after loading. ``margin``: pixels of :class:`~styler.nn.generator.Border` extension around
    every input (0: the trained generator's own outputs, borders included).
    """

    def __init__(self, generator: Generator, margin: int = BORDER) -> None:
        super().__init__()
        self.config, self.margin = generator.config, margin
        # The body ends with the upsample before the head; the head's SubpixelConv takes it in.
        layers = [_fast_up_block(m) if isinstance(m, UpBlock) else m for m in list(generator.body)[:-1]]
        self.head = SubpixelConv(generator.head[1], self.config.upsample)
        self.body = nn.Sequential(*layers)
        _fast_norms(self.body)

    @classmethod
    @torch.no_grad()
    def from_generator(cls, generator: Generator, margin: int = BORDER) -> "FastGenerator":
        import copy

        return cls(copy.deepcopy(generator), margin).eval()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _padded_forward(self.body, self.head, self.config, x, self.margin)
