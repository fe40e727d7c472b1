"""Feed-forward style generator.

Follows the image transformation network of Johnson, Alahi & Fei-Fei, "Perceptual Losses for
Real-Time Style Transfer and Super-Resolution" (ECCV 2016): reflection padding, instance
normalisation (Ulyanov et al. 2016), strided downsampling, residual blocks at low resolution,
upsampling back to full resolution.

Deliberate departures, all for speed on CPUs and small GPUs (see docs/performance.md):
  * 3x3 stem and head convolutions instead of 9x9 (Johnson's 9x9 ends cost a large share of
    the FLOPs at full resolution).
  * Half the channels (16-32-64 instead of 32-64-128) and 3 residual blocks instead of 5.
  * Upsampling is nearest-neighbour x2 followed by a 3x3 convolution, never a transposed
    convolution (Odena et al., "Deconvolution and Checkerboard Artifacts", Distill 2016); the
    channel reduction happens before the upsample with a 1x1 convolution so the 3x3 runs on
    fewer channels at the higher resolution.
  * Any input size is accepted: the input is reflection-padded to a multiple of the stride and
    the output cropped back.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from styler.config import GeneratorConfig


def _conv(in_ch: int, out_ch: int, kernel: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.ReflectionPad2d(kernel // 2),
        nn.Conv2d(in_ch, out_ch, kernel, stride=stride),
    )


class ConvNormAct(nn.Sequential):
    """Reflection-padded convolution, affine instance norm, ReLU."""

    def __init__(self, in_ch: int, out_ch: int, kernel: int = 3, stride: int = 1) -> None:
        super().__init__(
            _conv(in_ch, out_ch, kernel, stride),
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


class UpBlock(nn.Module):
    """1x1 channel reduction, nearest x2 upsample, 3x3 conv: no checkerboard by construction."""

    def __init__(self, in_ch: int, out_ch: int) -> None:
        super().__init__()
        self.reduce = nn.Conv2d(in_ch, out_ch, 1)
        self.conv = ConvNormAct(out_ch, out_ch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.interpolate(self.reduce(x), scale_factor=2.0, mode="nearest")
        return self.conv(x)


class Generator(nn.Module):
    """Image-to-image generator; input and output are RGB in [0, 1], shape (N, 3, H, W)."""

    def __init__(self, config: GeneratorConfig | None = None) -> None:
        super().__init__()
        self.config = config or GeneratorConfig()
        cfg = self.config
        c = cfg.base_channels
        strided = cfg.num_downsamples
        if cfg.pixel_unshuffle and strided > 0:
            # Space-to-depth (lossless) replaces the first strided conv: no layer runs at full
            # resolution except the head, which is where most of the memory traffic was.
            layers: list[nn.Module] = [nn.PixelUnshuffle(2), ConvNormAct(12, c, cfg.stem_kernel)]
            strided -= 1
        else:
            layers = [ConvNormAct(3, c, cfg.stem_kernel)]
        for _ in range(strided):
            layers.append(ConvNormAct(c, c * 2, 3, stride=2))
            c *= 2
        layers.extend(ResidualBlock(c) for _ in range(cfg.num_residual))
        for _ in range(strided):
            layers.append(UpBlock(c, c // 2))
            c //= 2
        if strided < cfg.num_downsamples:
            layers.append(nn.Upsample(scale_factor=2.0, mode="nearest"))
        self.body = nn.Sequential(*layers)
        self.head = _conv(c, 3, cfg.stem_kernel)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4 or x.shape[1] != 3:
            raise ValueError(f"expected a (N, 3, H, W) tensor, got shape {tuple(x.shape)}")
        h, w = x.shape[-2:]
        stride = self.config.stride
        # Pad to a multiple of the stride, and to at least 2 positions at the lowest resolution
        # (instance norm needs more than one spatial element).
        pad_h = max(h + (-h) % stride, 2 * stride) - h
        pad_w = max(w + (-w) % stride, 2 * stride) - w
        if pad_h or pad_w:
            # Reflection needs the pad to be smaller than the side; replicate covers tiny images.
            mode = "reflect" if pad_h < h and pad_w < w else "replicate"
            x = F.pad(x, (0, pad_w, 0, pad_h), mode=mode)
        # Centre the [0, 1] input so the first conv sees zero-mean data; the output is a
        # residual over the input, which keeps the content from the first step of training.
        y = self.head(self.body(x * 2.0 - 1.0)) + x
        return y[..., :h, :w]
