"""`Stylizer.__call__` takes what Python users have: PIL with EXIF orientation, paths, numpy, uint8 tensors."""

import numpy as np
import pytest
import torch
from PIL import Image

from styler.config import ApplyConfig, GeneratorConfig, Precision
from styler.device import compute_dtype, resolve_device
from styler.errors import ImageError, StylerError
from styler.inference.planning import plan
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


def test_repr_shows_style_device_and_precision():
    st = Stylizer.load("starry", device="cpu", config=ApplyConfig(precision=Precision.BF16))
    assert repr(st) == "Stylizer(style='starry', device='cpu', precision='bfloat16', stroke_scale='auto')"


def library_errors(tmp_path):
    """Errors a Python user can get from the apply side of the library, each with its message."""
    make_photo(tmp_path / "a.jpg")
    make_photo(tmp_path / "b.jpg", seed=1)
    (tmp_path / "taken").write_text("x")
    cases = [lambda: compute_dtype(Precision.FP16, torch.device("cpu")),
             lambda: Stylizer(Generator(GeneratorConfig(num_downsamples=4)), config=ApplyConfig(tile=72)),
             lambda: plan([tmp_path / "a.jpg", tmp_path / "b.jpg"], tmp_path / "out.png", "s"),
             lambda: plan([tmp_path / "a.jpg"], tmp_path / "results", "s"),
             lambda: plan([tmp_path], tmp_path / "taken", "s")]
    if not torch.cuda.is_available():
        cases.append(lambda: resolve_device("cuda"))
    for case in cases:
        with pytest.raises(StylerError) as caught:
            case()
        yield str(caught.value)


def test_library_errors_name_arguments_not_cli_flags(tmp_path):
    messages = list(library_errors(tmp_path))
    assert all("--" not in m and "-o " not in m for m in messages), messages
    assert "tile=72 does not fit style 'styled': tiles are a multiple of its stride, 16 (such as 64 or 80)" \
        in messages[1]
    assert messages[0].endswith("use precision=bf16 or precision=fp32")


def test_the_cli_shows_the_same_errors_with_its_flags():
    import click

    from styler.cli.apply import apply
    from styler.cli.common import cli_words

    with click.Context(apply):
        assert cli_words("use tile=512 or max_size=2048; output=a b.png, device=cpu") == \
            "use --tile 512 or --max-size 2048; -o a b.png, --device cpu"
        assert cli_words("pass overwrite=True; recursive=False; name=x") == \
            "pass --overwrite; --no-recursive; name=x"
    assert cli_words("tile=512") == "tile=512"  # no command: the library's words
