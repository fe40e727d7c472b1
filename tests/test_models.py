import pytest
import torch
from torch import nn

from styler.config import DiscriminatorConfig, GeneratorConfig, Upsample
from styler.nn import Generator, PatchDiscriminator

TINY = GeneratorConfig(base_channels=4, num_residual=1)


SMOOTH = GeneratorConfig(base_channels=4, num_residual=1, upsample=Upsample.BILINEAR, antialias=True)
FINE = GeneratorConfig(base_channels=4, num_residual=1, num_downsamples=2)  # residual blocks at 1/4


@pytest.mark.parametrize("config", [TINY, SMOOTH, FINE])
@pytest.mark.parametrize("h,w", [(64, 64), (37, 53), (1, 1), (3, 130), (65, 7)])
def test_generator_keeps_any_size(h, w, config):
    g = Generator(config)
    out = g(torch.rand(2, 3, h, w))
    assert out.shape == (2, 3, h, w)
    assert torch.isfinite(out).all()


def test_generator_has_no_transposed_convolutions():
    g = Generator(GeneratorConfig())
    assert not any(isinstance(m, nn.ConvTranspose2d) for m in g.modules())
    assert any(isinstance(m, nn.InstanceNorm2d) for m in g.modules())
    assert any(isinstance(m, nn.ReflectionPad2d) for m in g.modules())


@pytest.mark.parametrize("config", [TINY, SMOOTH, FINE])
def test_generator_gradients_reach_every_parameter(config):
    g = Generator(config)
    g(torch.rand(1, 3, 64, 64)).square().mean().backward()
    for name, p in g.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, name


def test_generator_rejects_wrong_channels():
    with pytest.raises(ValueError, match="N, 3, H, W"):
        Generator(TINY)(torch.rand(1, 4, 32, 32))


def test_generator_config_validation():
    from styler.errors import ConfigError

    with pytest.raises(ConfigError, match="base_channels"):
        GeneratorConfig(base_channels=0)
    with pytest.raises(ConfigError, match="num_downsamples must be 1..4, got 5"):
        GeneratorConfig(num_downsamples=5)


@pytest.mark.parametrize("halvings,stride,lowest", [(3, 8, (64, 8)), (2, 4, (32, 16)), (1, 2, (16, 32))])
def test_downsamples_set_the_stride_and_the_grid_of_the_residual_blocks(halvings, stride, lowest):
    g = Generator(GeneratorConfig(base_channels=16, num_residual=1, num_downsamples=halvings))
    assert g.config.stride == stride
    _, residual, _ = g.stages()
    shapes = []
    residual[0].register_forward_hook(lambda m, i, o: shapes.append(o.shape) and None)
    g(torch.rand(1, 3, 64, 64))
    assert tuple(shapes[0][1:3]) == lowest  # channels double per halving after the stem

def test_fields_of_no_generator_are_refused():
    from styler.config import from_dict
    from styler.errors import ConfigError

    with pytest.raises(ConfigError, match="GeneratorConfig: unknown field.s. stem_kernel"):
        from_dict(GeneratorConfig, {"base_channels": 4, "stem_kernel": 3})


def test_discriminator_outputs_a_patch_map():
    d = PatchDiscriminator(DiscriminatorConfig(base_channels=8))
    out = d(torch.rand(2, 3, 64, 64))
    assert out.ndim == 4 and out.shape[:2] == (2, 1)
    assert out.shape[-1] > 1 and out.shape[-2] > 1, "one logit per patch, not per image"
    assert torch.isfinite(out).all()


def test_discriminator_default_is_70x70_with_spectral_norm():
    d = PatchDiscriminator()
    assert d.receptive_field == 70
    convs = [m for m in d.modules() if isinstance(m, nn.Conv2d)]
    assert convs and all(hasattr(m, "parametrizations") for m in convs)


def test_blur_is_a_normalised_low_pass_without_weights():
    from styler.nn.generator import Blur

    blur = Blur(2)
    assert list(blur.state_dict()) == []
    flat = torch.full((1, 2, 6, 6), 0.7)
    torch.testing.assert_close(blur(flat), flat)
    checker = (torch.arange(8)[:, None] + torch.arange(8)[None, :]) % 2
    out = blur(checker.float().expand(1, 2, 8, 8))
    assert out[..., 1:-1, 1:-1].std() < 1e-6  # the highest frequency is removed entirely


def test_generator_output_is_squashed_into_the_image_range_without_the_input_skip():
    torch.manual_seed(0)
    g = Generator(GeneratorConfig(base_channels=4, num_residual=1)).eval()
    with torch.no_grad():
        g.head[1].weight.mul_(1000.0)  # drive the head far out of range
        y = g(torch.rand(1, 3, 32, 40))
    assert y.min() >= 0.0 and y.max() <= 1.0
    assert ((y < 0.01) | (y > 0.99)).float().mean() > 0.5  # saturated, so tanh did the squashing


def test_input_skip_adds_the_input_to_the_head():
    torch.manual_seed(0)
    x = torch.rand(1, 3, 32, 40)
    skip = Generator(GeneratorConfig(base_channels=4, num_residual=1, input_skip=True)).eval()
    plain = Generator(GeneratorConfig(base_channels=4, num_residual=1)).eval()
    for g in (skip, plain):
        with torch.no_grad():
            g.head[1].weight.zero_()
            g.head[1].bias.zero_()
    with torch.no_grad():
        assert torch.allclose(skip(x), x)  # a zero head: the identity
        assert torch.allclose(plain(x), torch.full_like(x, 0.5))  # a zero head: tanh(0) -> mid grey
