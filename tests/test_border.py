"""The border band (#23.7): a trained generator paints its outer rows darker or lighter than the
rest; inference extends the photo by point reflection (styler.nn.generator.Border), so every
bundled style's edges look like its interior."""

import pytest
import torch
import torch.nn.functional as F

from styler.inference.stylizer import Stylizer
from styler.io.images import luma
from styler.nn.fast import FastGenerator
from styler.nn.generator import BORDER, Border, extend_border, load_generator
from tests.test_bundled import BUNDLED, ROOT

SIZE, IMAGES, BAND = 128, 8, 4  # crops, how many, outer rows and columns that make the band

def _smooth_crops() -> tuple[torch.Tensor, torch.Tensor, int]:
    """Smooth random images twice the crop's size, and their centre crops: the crops' content is
    alike everywhere, so a band at their edges comes from the network, not from the content."""
    torch.manual_seed(0)
    big = F.interpolate(torch.rand(IMAGES, 3, SIZE // 8, SIZE // 8), size=(2 * SIZE, 2 * SIZE), mode="bicubic",
                        align_corners=False).clamp(0, 1)
    at = SIZE // 2
    return big, big[..., at:at + SIZE, at:at + SIZE].contiguous(), at

def _profile(y: torch.Tensor) -> torch.Tensor:
    """Mean luma (0..255) of every row, then of every column, over the images."""
    values = luma(y.clamp(0, 1))[:, 0] * 255
    return torch.cat([values.mean(-1).mean(0), values.mean(-2).mean(0)])

def band_and_spread(name: str, margin: int = BORDER) -> tuple[float, float]:
    """The outer bands' largest offset from the same content stylized inside the larger image
    (less the offset of the interior), and the spread (std) of the crop's own interior rows and
    columns. The reference is the whole larger image run as trained (no extension)."""
    g = load_generator(ROOT / "weights" / f"{name}.safetensors")[0].eval()
    big, crop, at = _smooth_crops()
    with torch.inference_mode():
        reference = _profile(FastGenerator.from_generator(g, margin=0)(big)[..., at:at + SIZE, at:at + SIZE])
        # what styler apply runs, or the fast path with another margin
        own = _profile(Stylizer(g).stylize_tensor(crop) if margin == BORDER
                       else FastGenerator.from_generator(g, margin=margin)(crop))
    inner = torch.cat([torch.arange(BAND * 2, SIZE - BAND * 2), SIZE + torch.arange(BAND * 2, SIZE - BAND * 2)])
    offset = (own - reference)[inner].mean()
    bands = [slice(start, start + BAND) for start in (0, SIZE - BAND, SIZE, 2 * SIZE - BAND)]
    worst = max(float((own[b] - reference[b]).mean() - offset) for b in bands)
    worst = max(worst, max(-float((own[b] - reference[b]).mean() - offset) for b in bands))
    return worst, float(own[inner].std())

@pytest.mark.parametrize("name", BUNDLED)
def test_every_bundled_style_paints_its_borders_like_its_interior(name):
    band, spread = band_and_spread(name)
    assert band < spread, f"{name}: the outer band is {band:.1f} levels off, the interior's spread {spread:.1f}"

def test_without_the_extension_starry_shows_the_band():
    """The test above can fail: run as trained, starry's bottom rows come out far darker."""
    band, spread = band_and_spread("starry", margin=0)
    assert band > 2 * spread

def test_point_reflection_continues_a_gradient_and_rows_build_the_same_image():
    ramp = torch.linspace(0.3, 0.6, 40).view(1, 1, 40, 1).expand(2, 3, 40, 30).contiguous()
    extended = extend_border(ramp, 8, BORDER)
    border = Border(40, 30, 8)
    assert extended.shape[-2:] == (border.padded_height, border.padded_width) == (88, 80)
    column = extended[0, 0, :, 0]  # 24 rows above and below: the ramp goes on, 0.115 to 0.785
    assert torch.allclose(column.diff(), torch.full((87,), 0.3 / 39), atol=1e-6)
    assert torch.equal(border.crop(extended), ramp)
    pieces = [border.rows(ramp, start, min(start + 7, 88)) for start in range(0, 88, 7)]
    assert torch.equal(torch.cat(pieces, -2), extended)
    bright = torch.ones(1, 3, 20, 20)  # values past 1 are folded back, never clamped flat
    assert extend_border(bright, 8, 8).eq(1).all()
