"""Johnson et al.'s TransformerNet, the reference fast style-transfer generator.

Layer for layer the network of pytorch/examples ``fast_neural_style/neural_style/transformer_net.py``
(Johnson, Alahi & Fei-Fei, ECCV 2016, with instance norm as in Ulyanov et al. 2016):

    9x9 conv 32 -> 3x3 stride-2 conv 64 -> 3x3 stride-2 conv 128 -> 5 residual blocks (128)
    -> nearest x2 upsample + 3x3 conv 64 -> nearest x2 upsample + 3x3 conv 32 -> 9x9 conv 3

with reflection padding before every convolution, affine instance norm after every
convolution but the last, ReLU after the first five norms and inside the residual blocks.
1,679,235 parameters.

Scaling: the pytorch example feeds images in [0, 255] and produces (unclamped) [0, 255]. Here
the module takes and returns [0, 1] images like styler's generator: it multiplies the input by
255 and divides the output by 255. Instance norm after the first convolution makes the network
nearly invariant to the input scale anyway; the wrapper only keeps the output range comparable
so the same losses and image code serve both networks.
"""

from __future__ import annotations

import torch
from torch import nn


class ConvLayer(nn.Module):
    """Reflection padding of kernel//2, then a convolution (the example's ``ConvLayer``)."""

    def __init__(self, in_ch: int, out_ch: int, kernel: int, stride: int) -> None:
        super().__init__()
        self.reflection_pad = nn.ReflectionPad2d(kernel // 2)
        self.conv2d = nn.Conv2d(in_ch, out_ch, kernel, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv2d(self.reflection_pad(x))


class ResidualBlock(nn.Module):
    """conv-IN-ReLU-conv-IN plus identity (Gross & Wilber's variant used by the example)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv1 = ConvLayer(channels, channels, 3, 1)
        self.in1 = nn.InstanceNorm2d(channels, affine=True)
        self.conv2 = ConvLayer(channels, channels, 3, 1)
        self.in2 = nn.InstanceNorm2d(channels, affine=True)
        self.relu = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.in1(self.conv1(x)))
        return self.in2(self.conv2(out)) + x


class UpsampleConvLayer(nn.Module):
    """Nearest-neighbour upsample then a reflection-padded convolution (no transposed conv)."""

    def __init__(self, in_ch: int, out_ch: int, kernel: int, stride: int, upsample: int | None = None) -> None:
        super().__init__()
        self.upsample = upsample
        self.reflection_pad = nn.ReflectionPad2d(kernel // 2)
        self.conv2d = nn.Conv2d(in_ch, out_ch, kernel, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.upsample:
            x = nn.functional.interpolate(x, mode="nearest", scale_factor=self.upsample)
        return self.conv2d(self.reflection_pad(x))


class TransformerNet(nn.Module):
    """(N, 3, H, W) in [0, 1] -> (N, 3, H, W) in about [0, 1]; H and W multiples of 4 keep the size."""

    PARAMETERS = 1_679_235

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = ConvLayer(3, 32, 9, 1)
        self.in1 = nn.InstanceNorm2d(32, affine=True)
        self.conv2 = ConvLayer(32, 64, 3, 2)
        self.in2 = nn.InstanceNorm2d(64, affine=True)
        self.conv3 = ConvLayer(64, 128, 3, 2)
        self.in3 = nn.InstanceNorm2d(128, affine=True)
        self.res1 = ResidualBlock(128)
        self.res2 = ResidualBlock(128)
        self.res3 = ResidualBlock(128)
        self.res4 = ResidualBlock(128)
        self.res5 = ResidualBlock(128)
        self.deconv1 = UpsampleConvLayer(128, 64, 3, 1, upsample=2)
        self.in4 = nn.InstanceNorm2d(64, affine=True)
        self.deconv2 = UpsampleConvLayer(64, 32, 3, 1, upsample=2)
        self.in5 = nn.InstanceNorm2d(32, affine=True)
        self.deconv3 = ConvLayer(32, 3, 9, 1)
        self.relu = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.relu(self.in1(self.conv1(x * 255.0)))
        y = self.relu(self.in2(self.conv2(y)))
        y = self.relu(self.in3(self.conv3(y)))
        y = self.res5(self.res4(self.res3(self.res2(self.res1(y)))))
        y = self.relu(self.in4(self.deconv1(y)))
        y = self.relu(self.in5(self.deconv2(y)))
        return self.deconv3(y) / 255.0
