"""--stroke-scale: the network runs at 1/S of the size; the output keeps the input's size and detail."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from styler.cli import main
from styler.config import ApplyConfig, GeneratorConfig
from styler.errors import ConfigError
from styler.inference.guided import guided_upsample, resize
from styler.inference.stylizer import Stylizer
from styler.io.weights import save_generator
from styler.nn import Generator
from tests.conftest import make_photo

TINY = GeneratorConfig(base_channels=4, num_residual=1)


def stylizer(**config) -> Stylizer:
    torch.manual_seed(0)
    return Stylizer(Generator(TINY), config=ApplyConfig(**config))


def seen_sizes(st: Stylizer) -> list[tuple[int, int]]:
    sizes: list[tuple[int, int]] = []
    st.fast.register_forward_pre_hook(lambda module, args: sizes.append(tuple(args[0].shape[-2:])))
    return sizes


@pytest.mark.parametrize("scale, seen", [(2, (32, 48)), (0.5, (128, 192)), (3, (21, 32))])
def test_network_sees_one_over_s_and_output_keeps_the_size(scale, seen):
    st = stylizer(stroke_scale=scale)
    sizes = seen_sizes(st)
    out = st(torch.rand(2, 3, 64, 96))
    assert sizes == [seen] and out.shape == (2, 3, 64, 96)
    assert 0 <= float(out.min()) and float(out.max()) <= 1


def test_scale_one_runs_the_network_at_full_size_without_guided_upsampling():
    st = stylizer(stroke_scale=1.0)
    sizes = seen_sizes(st)
    x = torch.rand(1, 3, 40, 52)
    out = st(x)
    assert sizes == [(40, 52)]
    with torch.no_grad():
        torch.testing.assert_close(out, st.fast(x), atol=0, rtol=0)  # the network's own output


def test_guided_upsampling_restores_edges_that_bilinear_blurs():
    x = torch.zeros(1, 3, 64, 64)
    x[..., :, 31:] = 1.0  # a sharp vertical edge, off the 2x grid
    small = resize(x, (32, 32))
    guided = guided_upsample(small, small, x)
    blurred = resize(small, (64, 64))
    assert float((guided - x).abs().mean()) < 0.5 * float((blurred - x).abs().mean())


def test_pil_with_alpha_and_tiling_keep_the_size():
    image = Image.new("RGBA", (70, 45), (10, 200, 30, 128))
    assert stylizer(stroke_scale=2)(image).size == (70, 45)
    assert stylizer(stroke_scale=2, tile=64, max_tile_pixels=0)(torch.rand(1, 3, 150, 130)).shape == (1, 3, 150, 130)


@pytest.mark.parametrize("bad", [0, -1, float("nan"), 100])
def test_bad_stroke_scale(bad):
    with pytest.raises(ConfigError, match="stroke scale"):
        ApplyConfig(stroke_scale=bad)


def test_cli_stroke_scale(tmp_path):
    save_generator(tmp_path / "w" / "demo.safetensors", Generator(TINY), {"style_name": "demo"})
    photo = make_photo(tmp_path / "p.png", size=(90, 61))
    args = ["apply", str(photo), "--style", "demo", "--weights-dir", str(tmp_path / "w"), "--device", "cpu"]
    result = CliRunner().invoke(main, [*args, "--stroke-scale", "2"])
    assert result.exit_code == 0, result.output
    assert Image.open(tmp_path / "p_demo.png").size == (90, 61)
    result = CliRunner().invoke(main, [*args, "--stroke-scale", "0", "--overwrite"])
    assert result.exit_code == 1
    assert result.output.strip() == "error: stroke scale must be 'auto' or between 0.125 and 16, got 0.0"


def test_auto_grows_the_strokes_with_the_image_from_the_styles_training_size():
    from styler.io.weights import WeightsInfo

    torch.manual_seed(0)
    info = WeightsInfo(Path("x.safetensors"), TINY, {"style_name": "x", "image_size": "16"})  # reference 128 px
    st = Stylizer(Generator(TINY), info)
    sizes = seen_sizes(st)
    assert st.config.stroke_scale == "auto"
    st(torch.rand(1, 3, 96, 64))  # below the reference: as trained
    st(torch.rand(1, 3, 96, 512))  # four times the reference: strokes four times as large
    assert sizes == [(96, 64), (24, 128)]
    assert st.stroke_scale_for(4000, 3000) == 4000 / 128
    assert Stylizer(Generator(TINY)).stroke_scale_for(4000, 2650) == 4000 / 1024  # no recorded size: 128
    assert stylizer(stroke_scale=1).stroke_scale_for(4000, 3000) == 1.0  # a number is kept as given


def test_bundled_styles_start_growing_strokes_above_1024_px():
    st = Stylizer.load("starry", device="cpu")
    assert st.training_size == 128
    assert st.stroke_scale_for(1000, 750) == 1.0 and st.stroke_scale_for(4000, 2650) == pytest.approx(3.906, abs=1e-3)


def test_cli_accepts_auto_and_numbers_and_names_the_choice(tmp_path):
    save_generator(tmp_path / "w" / "demo.safetensors", Generator(TINY), {"style_name": "demo"})
    photo = make_photo(tmp_path / "p.png", size=(90, 61))
    args = ["apply", str(photo), "--style", "demo", "--weights-dir", str(tmp_path / "w"), "--device", "cpu"]
    assert CliRunner().invoke(main, [*args, "--stroke-scale", "AUTO", "-o", str(tmp_path / "a.png")]).exit_code == 0
    bad = CliRunner().invoke(main, [*args, "--stroke-scale", "big"])
    assert bad.exit_code == 2 and "expected 'auto' or a number, got 'big'" in bad.stderr
