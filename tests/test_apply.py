import pytest
import torch
from PIL import Image

from styler.config import ApplyConfig, GeneratorConfig
from styler.errors import ConfigError, ImageError
from styler.inference.pipeline import apply_to_paths
from styler.inference.planning import plan_outputs
from styler.inference.stylizer import Stylizer, preserve_color
from styler.io.images import luma
from styler.io.weights import save_generator
from styler.nn import Generator
from styler.nn.generator import BORDER, Border, extend_border
from tests.conftest import make_photo

TINY = GeneratorConfig(base_channels=4, num_residual=1)


def stylizer(**kwargs) -> Stylizer:
    torch.manual_seed(0)
    g = Generator(TINY)
    with torch.no_grad():
        for p in g.head.parameters():  # a visible change, so strength and colour tests mean something
            p.add_(torch.randn_like(p) * 0.3)
    return Stylizer(g, config=ApplyConfig(**kwargs))


def test_pil_in_pil_out_same_size():
    out = stylizer()(Image.new("RGB", (37, 21), "blue"))
    assert isinstance(out, Image.Image) and out.size == (37, 21) and out.mode == "RGB"


def test_tensor_and_batch_inputs():
    s = stylizer()
    assert s(torch.rand(3, 20, 30)).shape == (3, 20, 30)
    assert s(torch.rand(2, 3, 20, 30)).shape == (2, 3, 20, 30)
    with pytest.raises(ImageError):
        s(torch.rand(1, 1, 8, 8))
    with pytest.raises(ImageError):
        s("not an image")


def test_strength_zero_returns_input_exactly_and_one_is_full_style():
    x = torch.rand(1, 3, 16, 16)
    assert torch.equal(stylizer(strength=0.0)(x), x)
    full, half = stylizer(strength=1.0)(x), stylizer(strength=0.5)(x)
    assert not torch.allclose(full, x, atol=1e-3)
    assert torch.allclose(half, (full + x) / 2, atol=1e-5)


def test_strength_out_of_range():
    with pytest.raises(ConfigError, match="strength"):
        ApplyConfig(strength=1.5)


def test_preserve_color_keeps_input_chroma():
    from styler.inference.stylizer import _TO_YCC

    x = torch.rand(1, 3, 16, 16) * 0.5 + 0.25
    out = stylizer(preserve_color=True)(x)
    chroma = lambda t: torch.einsum("ij,njhw->nihw", _TO_YCC[1:], t)
    inside = ((out > 0) & (out < 1)).all(1, keepdim=True).expand(-1, 2, -1, -1)  # not clipped to gamut
    assert inside.float().mean() > 0.3
    assert torch.allclose(chroma(out)[inside], chroma(x)[inside], atol=2e-3)
    plain = stylizer()(x)
    assert not torch.allclose(chroma(plain), chroma(x), atol=2e-3)


def test_preserve_color_uses_stylized_luminance():
    styl, orig = torch.rand(1, 3, 8, 8) * 0.5 + 0.25, torch.rand(1, 3, 8, 8) * 0.5 + 0.25
    out = preserve_color(styl, orig)
    assert torch.allclose(luma(out), luma(styl), atol=1e-4)


def test_alpha_channel_is_kept():
    image = Image.new("RGBA", (20, 10), (200, 10, 10, 128))
    out = stylizer()(image)
    assert out.mode == "RGBA" and out.getchannel("A").getextrema() == (128, 128)


def test_max_size_downscales():
    out = stylizer(max_size=16)(Image.new("RGB", (64, 32)))
    assert out.size == (16, 8)


def test_plan_outputs_single_file_default_and_explicit(tmp_path):
    src = make_photo(tmp_path / "in.jpg")
    pairs, failed = plan_outputs([src], None, "starry")
    assert pairs == [(src, tmp_path / "in_starry.jpg")] and not failed
    pairs, _ = plan_outputs([src], tmp_path / "out.png", "starry")
    assert pairs == [(src, tmp_path / "out.png")]


def test_plan_outputs_folder_mirrors_tree(photo_dir, tmp_path):
    pairs, failed = plan_outputs([photo_dir], tmp_path / "out", "s")
    assert not failed and len(pairs) == 6
    assert (photo_dir / "nested" / "deeper" / "q.JPG", tmp_path / "out" / "nested" / "deeper" / "q.JPG") in pairs


def test_plan_outputs_never_overwrites_input(tmp_path):
    src = make_photo(tmp_path / "in.png")
    pairs, failed = plan_outputs([src], src, "s")
    assert not pairs and "refusing to overwrite" in failed[0][1]
    pairs, failed = plan_outputs([tmp_path / "missing.png"], None, "s")
    assert not pairs and "no such file" in failed[0][1]


def test_apply_to_paths_continues_after_a_bad_file(tmp_path):
    good = make_photo(tmp_path / "good.png")
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"")
    summary = apply_to_paths(stylizer(), [(bad, tmp_path / "o" / "bad.png"), (good, tmp_path / "o" / "good.png")])
    assert summary.done == [tmp_path / "o" / "good.png"]
    assert summary.failed[0][0] == bad and "bad.png" in summary.failed[0][1]
    assert Image.open(tmp_path / "o" / "good.png").size == (80, 64)


def test_load_by_name(tmp_path):
    save_generator(tmp_path / "mine.safetensors", Generator(TINY), {"style_name": "mine"})
    s = Stylizer.load("mine", weights_dir=tmp_path, device="cpu")
    assert s.name == "mine" and s.device.type == "cpu"


def test_precision_bf16_on_cpu_is_close_to_fp32_and_fp16_is_refused():
    from styler.config import Precision

    x = torch.rand(1, 3, 40, 48)
    fp32 = stylizer(precision=Precision.FP32)(x)
    bf16 = stylizer(precision=Precision.BF16)
    assert bf16.dtype == torch.bfloat16
    out = bf16(x)
    assert out.dtype == torch.float32 and 10 * torch.log10(1 / (out - fp32).pow(2).mean()) > 30
    with pytest.raises(ConfigError, match="fp16 needs a CUDA GPU"):
        stylizer(precision=Precision.FP16)
    assert stylizer().dtype == torch.float32  # auto on the CPU


def test_api_load_with_tiling_and_precision_options(tmp_path):
    from styler.config import Precision

    save_generator(tmp_path / "mine.safetensors", Generator(TINY), {"style_name": "mine"})
    s = Stylizer.load(tmp_path / "mine.safetensors", device="cpu",
                      config=ApplyConfig(tile=64, precision=Precision.FP32))
    assert s(Image.new("RGB", (150, 70), "green")).size == (150, 70)
    assert s(torch.rand(2, 3, 70, 150)).shape == (2, 3, 70, 150)


def test_stylizer_fast_path_matches_plain_generator():
    """The plain generator on the photo extended by its border, as the Stylizer runs it."""
    s = stylizer()
    x = torch.rand(2, 3, 45, 70)
    stride = s.generator.config.stride
    with torch.no_grad():
        plain = Border(45, 70, stride).crop(s.generator(extend_border(x, stride, BORDER))).clamp(0, 1)
    assert torch.allclose(s(x), plain, atol=1e-5)
