"""Tiled inference: stripes with whole-image statistics equal the whole-image pass, in bounded
working memory."""

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image
from torch import nn

from styler.cli import main
from styler.config import ApplyConfig, GeneratorConfig, TileStats, Upsample
from styler.errors import ConfigError
from styler.inference.stylizer import AUTO_TILE, Stylizer
from styler.inference.tiling import FixedStatsNorm, GlobalStatsGenerator, NormMode, downscale, exact_forward, \
    stripe_rows, tiled_forward
from styler.io.weights import save_generator
from styler.nn import Generator
from styler.nn.fast import FastGenerator
from styler.nn.generator import Border
from tests.conftest import make_photo

CPU = torch.device("cpu")
DOWN = TileStats.DOWNSCALED


def generator(config: GeneratorConfig | None = None, spread: float = 0.1) -> Generator:
    torch.manual_seed(0)
    g = Generator(config or GeneratorConfig(base_channels=4, num_residual=1)).eval()
    with torch.no_grad():
        for p in g.parameters():  # away from the identity-like init, so differences show
            p.add_(torch.randn_like(p) * spread)
    return g


def photo(h: int = 200, w: int = 168) -> torch.Tensor:
    torch.manual_seed(1)
    return torch.nn.functional.avg_pool2d(torch.rand(1, 3, h, w), 5, 1, 2)


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    mse = (a.clamp(0, 1) - b.clamp(0, 1)).pow(2).mean().clamp_min(1e-20)
    return float(10 * torch.log10(1 / mse))


def whole(g: Generator, x: torch.Tensor) -> torch.Tensor:
    """The untiled pass the Stylizer runs: the fast path on the photo with its border extension."""
    with torch.no_grad():
        return FastGenerator.from_generator(g)(x)


def test_fixed_stats_norm_in_plain_mode_is_instance_norm():
    norm = nn.InstanceNorm2d(5, affine=True)
    with torch.no_grad():
        norm.weight.uniform_(0.5, 2), norm.bias.uniform_(-1, 1)
    x = torch.randn(2, 5, 9, 7)
    assert torch.allclose(FixedStatsNorm(norm)(x), norm(x), atol=1e-5)


@pytest.mark.parametrize("size", [(96, 136), (83, 141), (10, 7)])  # multiples of 8, not, smaller than 16
def test_exact_statistics_make_stripes_equal_the_whole_image_pass(size, capsys):
    g = generator(GeneratorConfig(base_channels=8, num_residual=2), spread=0.3)  # trained-like: far from identity
    x = torch.cat([photo(*size), torch.rand(1, 3, *size)])  # two different images: per-sample statistics
    plain = whole(g, x)
    assert psnr(plain, x) < 15  # the network really restyles, so a match is not trivial
    tiled = tiled_forward(GlobalStatsGenerator(g), x, 64, CPU)  # default: TileStats.EXACT
    assert tiled.shape == x.shape
    assert psnr(tiled, plain) >= 35 and (tiled - plain).abs().max() < 1e-4  # float rounding only
    with capsys.disabled():
        print(f"\n  exact statistics, {size[0]}x{size[1]}, tile 64: {psnr(tiled, plain):.1f} dB vs whole image")


@pytest.mark.parametrize("config", [GeneratorConfig(base_channels=4, num_residual=0),
                                    GeneratorConfig(base_channels=4, upsample=Upsample.NEAREST),
                                    GeneratorConfig(base_channels=4, antialias=True),
                                    GeneratorConfig(base_channels=4, input_skip=True),
                                    GeneratorConfig(base_channels=4, num_downsamples=3),
                                    GeneratorConfig(base_channels=4, num_downsamples=1),
                                    GeneratorConfig(base_channels=4, num_downsamples=4)])
def test_exact_statistics_on_other_layouts(config):
    g, x = generator(config, spread=0.3), photo(90, 75)
    assert (tiled_forward(GlobalStatsGenerator(g), x, 64, CPU) - whole(g, x)).abs().max() < 1e-4


def test_stripes_one_stride_high_still_carry_enough_context():
    """A wide, flat photo gets the thinnest stripes (64 * 64 pixels over 700 columns: one stride
    of rows), thinner than the halo every layer needs."""
    g, x = generator(spread=0.3), photo(40, 700)
    assert stripe_rows(64, Border(40, 700, 8).padded_width, 8) == 8
    assert (tiled_forward(GlobalStatsGenerator(g), x, 64, CPU) - whole(g, x)).abs().max() < 1e-4


def test_no_layer_sees_more_than_a_stripe():
    """Working memory is bounded: every layer runs on one stripe and its halo, at every
    resolution, however tall the image; only the two lowest-resolution buffers are whole."""
    g = generator(GeneratorConfig(base_channels=4, num_residual=2, num_downsamples=2))
    model = GlobalStatsGenerator(g)
    x = photo(600, 64)
    border = Border(600, 64, 4)
    stripe = stripe_rows(64, border.padded_width, 4)  # 64 * 64 pixels: 36 of the 648 rows
    rows: list[float] = []  # each activation's height in full-resolution rows

    def record(module, args, out):
        rows.append(out.shape[-2] * border.padded_width / out.shape[-1])

    hooks = [m.register_forward_hook(record) for m in model.modules() if isinstance(m, (nn.Conv2d, FixedStatsNorm))]
    out = tiled_forward(model, x, 64, CPU)
    for hook in hooks:
        hook.remove()
    assert out.shape == x.shape and (out - whole(g, x)).abs().max() < 1e-4
    # a stripe and two halos of at most 3 lowest-resolution rows (12 px)
    assert (stripe, border.padded_height) == (36, 648) and model.decoder_halo == 3
    assert max(rows) <= stripe + 2 * 12, max(rows)


def test_exact_measurement_runs_only_the_layers_before_each_norm():
    """Each norm's measuring pass ends before that norm: the head only runs in the final pass,
    once per stripe; the first convolution runs once per encoder norm per stripe."""
    g, x = generator(), photo(96, 136)
    model = GlobalStatsGenerator(g)
    calls = []
    model.fast.head.register_forward_hook(lambda *_: calls.append(1))
    first_conv = next(m for m in model.encoder if isinstance(m, nn.Conv2d))
    first_calls = []
    first_conv.register_forward_hook(lambda *_: first_calls.append(1))
    exact_forward(model, x, 64, CPU)
    stride = g.config.stride
    border = Border(96, 136, stride)
    stripes = -(-border.padded_height // stripe_rows(64, border.padded_width, stride))
    assert len(calls) == stripes
    encoder_norms = sum(isinstance(m, nn.InstanceNorm2d) for layer in g.stages()[0] for m in layer.modules())
    assert len(first_calls) == encoder_norms * stripes  # a prefix pass per encoder norm but the last, one build


def test_tiled_matches_untiled_with_the_same_downscaled_statistics(capsys):
    g, x = generator(), photo(144, 120)
    model = GlobalStatsGenerator(g)
    tiled = tiled_forward(model, x, 96, CPU, stats_size=64, stats=DOWN)  # statistics from a 64-px copy
    with torch.no_grad():
        model._set_mode(NormMode.FIXED)
        untiled_same_stats = model(x)
    plain = whole(g, x)
    assert (tiled - untiled_same_stats).abs().max() < 1e-5
    with capsys.disabled():
        print(f"\n  tiled vs untiled, same statistics: {psnr(tiled, untiled_same_stats):.1f} dB; "
              f"vs the whole-image pass (statistics from a 64-px copy): {psnr(tiled, plain):.1f} dB")


def test_full_size_statistics_reproduce_the_whole_image_pass():
    g, x = generator(), photo(83, 141)  # not multiples of 8: the bottom/right stripes are padded
    tiled = tiled_forward(GlobalStatsGenerator(g), x, 64, CPU, stats_size=None, stats=DOWN)
    assert (tiled - whole(g, x)).abs().max() < 1e-4


def test_per_piece_statistics_would_show_seams():
    """Why global statistics matter: normalising each piece by itself changes the result."""
    g, x = generator(), photo()
    plain = whole(g, x)
    per_piece = torch.cat([whole(g, x[..., :, :88]), whole(g, x[..., :, 88:])], -1)
    tiled = tiled_forward(GlobalStatsGenerator(g), x, 88, CPU)
    assert psnr(per_piece, plain) < psnr(tiled, plain) - 20


def test_bad_tile_sizes():
    with pytest.raises(ConfigError, match="tile size must be at least 64"):
        ApplyConfig(tile=32)
    with pytest.raises(ConfigError, match=r"tile=66 does not fit style 'styled': tiles are a multiple of its "
                                          r"stride, 4 \(such as 64 or 68\)"):
        Stylizer(generator(), config=ApplyConfig(tile=66))  # the stride is the style's, so checked here
    with pytest.raises(ConfigError, match="tile size"):
        tiled_forward(GlobalStatsGenerator(generator()), photo(), 40, CPU)
    with pytest.raises(ConfigError, match="tile size"):
        tiled_forward(GlobalStatsGenerator(generator()), photo(), 66, CPU)  # not a multiple of the stride


def test_stylizer_tiles_above_the_pixel_budget_and_keeps_the_size():
    g = generator()
    auto = Stylizer(g, config=ApplyConfig(max_tile_pixels=1000))
    assert auto.tile_size(40, 40) == AUTO_TILE and auto.tile_size(30, 30) is None
    assert Stylizer(g, config=ApplyConfig(max_tile_pixels=0)).tile_size(5000, 5000) is None
    x = photo(100, 97)
    untiled = Stylizer(g)(x)
    for config in (ApplyConfig(tile=72), ApplyConfig(tile=72, tile_stats=DOWN, stats_size=1024)):
        forced = Stylizer(g, config=config)
        out = forced(x)
        assert forced.tile_size(100, 97) == 72 and out.shape == x.shape
        assert psnr(out, untiled) > 60  # exact, or the whole image fits the downscaled pass
    with pytest.raises(ConfigError, match="tile stats must be a TileStats"):
        ApplyConfig(tile_stats="exact")


def test_apply_tile_stats_option_end_to_end(tmp_path):
    torch.manual_seed(0)
    save_generator(tmp_path / "w" / "demo.safetensors", generator(spread=0.3), {"style_name": "demo"})
    src = make_photo(tmp_path / "a.png", size=(150, 90))

    def apply(name, *extra):
        result = CliRunner().invoke(main, ["apply", str(src), "-o", str(tmp_path / name), "--style", "demo",
                                           "--weights-dir", str(tmp_path / "w"), "--device", "cpu", *extra])
        return result, tmp_path / name

    images = {}
    for name, extra in {"plain.png": [], "exact.png": ["--tile", "64"],
                        "down.png": ["--tile", "64", "--tile-stats", "downscaled", "--stats-size", "32"]}.items():
        result, path = apply(name, *extra)
        assert result.exit_code == 0, result.output
        images[name] = np.asarray(Image.open(path), dtype=np.int16)
    assert np.abs(images["exact.png"] - images["plain.png"]).max() <= 1  # 8-bit rounding at most
    assert np.abs(images["down.png"] - images["plain.png"]).max() > 1  # a 32-px statistics pass differs
    bad, _ = apply("bad.png", "--tile", "64", "--tile-stats", "approx")
    assert bad.exit_code == 2 and "Invalid value for '--tile-stats'" in bad.output


def test_downscale_keeps_small_images():
    x = photo(50, 40)
    assert downscale(x, 64) is x and downscale(x, 25).shape[-2:] == (25, 20)
