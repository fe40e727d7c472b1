"""`Stylizer.__call__` takes what Python users have: PIL with EXIF orientation, paths, numpy, uint8 tensors."""

import numpy as np
import pytest
import torch
from PIL import Image

from styler.config import GeneratorConfig
from styler.errors import ImageError
from styler.inference.stylizer import Stylizer
from styler.io.images import pil_to_tensor
from styler.nn import Generator
from tests.conftest import make_photo


@pytest.fixture
def stylizer():
    torch.manual_seed(0)
    return Stylizer(Generator(GeneratorConfig(base_channels=4, num_residual=1)))


def test_exif_orientation_is_applied_to_pil_input_as_the_cli_does(stylizer, tmp_path):
    path = make_photo(tmp_path / "p.jpg", size=(40, 24))
    image = Image.open(path)
    exif = image.getexif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    image.save(tmp_path / "rotated.jpg", exif=exif.tobytes())
    out = stylizer(Image.open(tmp_path / "rotated.jpg"))
    assert out.size == (24, 40)
    assert stylizer(tmp_path / "rotated.jpg").size == (24, 40)  # a path works too
    assert stylizer(str(tmp_path / "rotated.jpg")).size == (24, 40)


def test_numpy_arrays_uint8_and_float(stylizer, tmp_path):
    image = Image.open(make_photo(tmp_path / "p.png", size=(32, 24))).convert("RGB")
    array = np.asarray(image)
    out = stylizer(array)
    assert out.dtype == np.uint8 and out.shape == (24, 32, 3)
    assert np.array_equal(out, np.asarray(stylizer(image)))
    unit = stylizer(array.astype(np.float32) / 255)
    assert unit.dtype == np.float32 and unit.shape == (24, 32, 3) and 0 <= unit.min() and unit.max() <= 1
    assert np.abs(unit * 255 - out).max() <= 1
    with pytest.raises(ImageError, match=r"expected an \(H, W, 3\) array"):
        stylizer(array[..., 0])


def test_uint8_tensor_is_scaled_from_0_255(stylizer, tmp_path):
    x = (pil_to_tensor(Image.open(make_photo(tmp_path / "p.png", size=(32, 24))).convert("RGB")) * 255).round()
    out = stylizer(x.to(torch.uint8))
    assert out.dtype == torch.uint8
    expected = (stylizer(x / 255) * 255).round().to(torch.uint8)
    assert torch.equal(out, expected)
    assert stylizer(x.to(torch.uint8)[None]).shape == (1, 3, 24, 32)


def test_float_tensor_outside_0_1_is_an_error_not_a_white_image(stylizer):
    with pytest.raises(ImageError, match=r"tensor values span 0\.\.255, expected \[0, 1\]"):
        stylizer(torch.linspace(0, 255, 3 * 16 * 16).view(3, 16, 16))
    with pytest.raises(ImageError, match="int64"):
        stylizer(torch.zeros(3, 16, 16, dtype=torch.int64))
