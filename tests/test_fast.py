"""FastGenerator: the inference rewrite gives the plain generator's images, on several layouts
and odd sizes, and leaves the generator it was built from untouched."""

from __future__ import annotations

import pytest
import torch

from styler.config import GeneratorConfig, Upsample
from styler.nn.fast import FastGenerator, subpixel_weight
from styler.nn.generator import Generator

# Fast-path tolerance: the rewritten layers reorder float sums, nothing else (max abs, [0,1] px).
FAST_ATOL = 1e-4


def _perturbed(config: GeneratorConfig) -> Generator:
    """A generator whose norms and biases are not at their init values, so equality means something."""
    torch.manual_seed(0)
    g = Generator(config).eval()
    with torch.no_grad():
        for p in g.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    return g


@pytest.mark.parametrize("mode,pad", [(Upsample.NEAREST, "reflect"), (Upsample.BILINEAR, "replicate")])
def test_subpixel_weight_equals_upsample_then_conv(mode, pad):
    torch.manual_seed(1)
    conv = torch.nn.Conv2d(5, 4, 3)
    x = torch.rand(2, 5, 9, 7)
    up = torch.nn.functional.interpolate(x, scale_factor=2.0, mode=mode.value)
    plain = conv(torch.nn.functional.pad(up, (1, 1, 1, 1), mode=pad))
    fast = torch.nn.functional.conv2d(torch.nn.functional.pad(x, (1, 1, 1, 1), mode="replicate"),
                                      subpixel_weight(conv.weight, mode), conv.bias.repeat_interleave(4))
    torch.testing.assert_close(torch.nn.functional.pixel_shuffle(fast, 2), plain, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("config", [
    GeneratorConfig(),
    GeneratorConfig(base_channels=4, num_residual=1, upsample=Upsample.NEAREST),
    GeneratorConfig(base_channels=4, num_residual=1, antialias=True),
    GeneratorConfig(base_channels=4, num_residual=1, num_downsamples=3),
])
@pytest.mark.parametrize("shape", [(2, 3, 64, 64), (1, 3, 37, 53)])
def test_fast_generator_gives_the_plain_images(config, shape):
    g = _perturbed(config)
    fast = FastGenerator.from_generator(g, margin=0)  # as trained; the border extension: test_border.py
    x = torch.rand(shape)
    with torch.inference_mode():
        torch.testing.assert_close(fast(x), g(x), atol=FAST_ATOL, rtol=0)


def test_fast_generator_leaves_the_source_untouched():
    g = _perturbed(GeneratorConfig(base_channels=4, num_residual=1))
    keys = list(g.state_dict())
    fast = FastGenerator.from_generator(g)
    assert list(g.state_dict()) == keys
    assert not any(isinstance(m, torch.nn.Upsample) for m in fast.modules())
