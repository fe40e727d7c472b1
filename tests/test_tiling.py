"""Tiled inference: whole-image statistics make tiles agree with the untiled pass."""

import pytest
import torch
from torch import nn

from styler.apply import AUTO_TILE, Stylizer
from styler.config import ApplyConfig, GeneratorConfig
from styler.errors import ConfigError
from styler.models import Generator
from styler.tiling import BLEND, FixedStatsNorm, GlobalStatsGenerator, _ramp, downscale, receptive_margin, \
    tile_starts, tiled_forward

CPU = torch.device("cpu")


def generator() -> Generator:
    torch.manual_seed(0)
    g = Generator(GeneratorConfig(base_channels=4, num_residual=1)).eval()
    with torch.no_grad():
        for p in g.parameters():  # away from the identity-like init, so differences show
            p.add_(torch.randn_like(p) * 0.1)
    return g


def photo(h: int = 200, w: int = 168) -> torch.Tensor:
    torch.manual_seed(1)
    return torch.nn.functional.avg_pool2d(torch.rand(1, 3, h, w), 5, 1, 2)


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    mse = (a.clamp(0, 1) - b.clamp(0, 1)).pow(2).mean().clamp_min(1e-20)
    return float(10 * torch.log10(1 / mse))


def test_fixed_stats_norm_in_plain_mode_is_instance_norm():
    norm = nn.InstanceNorm2d(5, affine=True)
    with torch.no_grad():
        norm.weight.uniform_(0.5, 2), norm.bias.uniform_(-1, 1)
    x = torch.randn(2, 5, 9, 7)
    assert torch.allclose(FixedStatsNorm(norm)(x), norm(x), atol=1e-5)


def test_tiled_matches_untiled_with_the_same_global_statistics(capsys):
    g, x = generator(), photo(144, 120)
    model = GlobalStatsGenerator(g)
    tiled = tiled_forward(model, x, 96, CPU, stats_size=64)  # stats from a 64-px copy, 2x2 tiles
    with torch.no_grad():
        untiled_same_stats, plain = model(x), g(x)
    assert len(tile_starts(144, 96, 8)) == 2
    assert psnr(tiled, untiled_same_stats) >= 35
    with capsys.disabled():
        print(f"\n  tiled vs untiled, same statistics: {psnr(tiled, untiled_same_stats):.1f} dB; "
              f"vs plain untiled (statistics from a 64-px copy): {psnr(tiled, plain):.1f} dB")


def test_full_size_statistics_reproduce_the_plain_forward():
    g, x = generator(), photo(83, 141)  # not multiples of 8: the bottom/right tiles are padded
    tiled = tiled_forward(GlobalStatsGenerator(g), x, 64, CPU, stats_size=None)
    with torch.no_grad():
        assert (tiled - g(x)).abs().max() < 1e-4


def test_per_tile_statistics_would_show_seams():
    """Why global statistics matter: normalising each tile by itself changes the result."""
    g, x = generator(), photo()
    model = GlobalStatsGenerator(g)
    with torch.no_grad():
        plain = g(x)
        per_tile = torch.cat([g(x[..., :, :88]), g(x[..., :, 88:])], -1)
    tiled = tiled_forward(model, x, 88, CPU, stats_size=None)
    assert psnr(per_tile, plain) < psnr(tiled, plain) - 20


def test_receptive_margin_bounds_the_influence_of_a_pixel():
    g = generator()
    model = GlobalStatsGenerator(g)
    x = photo(256, 256)
    model.collect(x)
    y = x.clone()
    y[..., 128, 128] += 0.5
    with torch.no_grad():
        changed = (model(y) - model(x)).abs().amax(1)[0] > 0
    rows, cols = changed.nonzero(as_tuple=True)
    reach = max((rows - 128).abs().max(), (cols - 128).abs().max())
    assert 0 < reach <= model.margin and model.margin == receptive_margin(g)
    assert receptive_margin(Generator()) == 104  # default architecture: 95 px plus one stride


def test_tiles_are_aligned_cover_the_image_and_blend_to_one():
    for length in (64, 65, 300, 1000):
        starts = tile_starts(length, 128, 8)
        assert starts[0] == 0 and min(starts[-1] + 128, length) == length
        assert all(s % 8 == 0 for s in starts)
        total = torch.zeros(length)
        for s in starts:
            total[s:min(s + 128, length)] += _ramp(s, min(s + 128, length), length)
        assert torch.allclose(total, torch.ones(length), atol=1e-6)
    assert _ramp(0, 128, 300)[:BLEND].eq(1).all()  # no fade at the image border


def test_bad_tile_sizes():
    with pytest.raises(ConfigError, match="tile size"):
        ApplyConfig(tile=100)
    with pytest.raises(ConfigError, match="tile size"):
        tiled_forward(GlobalStatsGenerator(generator()), photo(), 40, CPU)


def test_stylizer_tiles_above_the_pixel_budget_and_keeps_the_size():
    g = generator()
    auto = Stylizer(g, config=ApplyConfig(max_tile_pixels=1000))
    assert auto.tile_size(40, 40) == AUTO_TILE and auto.tile_size(30, 30) is None
    assert Stylizer(g, config=ApplyConfig(max_tile_pixels=0)).tile_size(5000, 5000) is None
    forced = Stylizer(g, config=ApplyConfig(tile=72, stats_size=1024))
    x = photo(100, 97)
    out = forced(x)
    assert forced.tile_size(100, 97) == 72 and out.shape == x.shape
    assert psnr(out, Stylizer(g)(x)) > 60  # the whole image fits the statistics pass: exact


def test_downscale_keeps_small_images():
    x = photo(50, 40)
    assert downscale(x, 64) is x and downscale(x, 25).shape[-2:] == (25, 20)
