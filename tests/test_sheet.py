"""`styler sheet`: one image in every style, labelled."""

import torch
from click.testing import CliRunner
from PIL import Image

from styler.cli import main
from styler.config import GeneratorConfig
from styler.inference.sheet import LABEL_HEIGHT, render_sheet
from styler.io.weights import save_generator
from styler.nn import Generator
from tests.conftest import make_photo

TINY = GeneratorConfig(base_channels=4, num_residual=1)


def invoke(args):
    return CliRunner().invoke(main, args, catch_exceptions=False)


def no_bundled_styles(monkeypatch, tmp_path):
    monkeypatch.setattr("styler.io.weights.bundled_dir", lambda: tmp_path / "no-bundled")


def test_sheet_shows_every_style_and_skips_broken_files(tmp_path, monkeypatch):
    no_bundled_styles(monkeypatch, tmp_path)
    for i, name in enumerate(("alpha", "beta", "gamma")):
        torch.manual_seed(i)
        save_generator(tmp_path / "w" / f"{name}.safetensors", Generator(TINY), {"style_name": name})
    (tmp_path / "w" / "broken.safetensors").write_bytes(b"junk")
    photo = make_photo(tmp_path / "photo.png", size=(80, 64))
    result = invoke(["sheet", str(photo), "-o", str(tmp_path / "sheet.png"), "--size", "40",
                     "--weights-dir", str(tmp_path / "w"), "--device", "cpu"])
    assert result.exit_code == 0, result.output
    assert "with 3 style(s)" in result.stdout and "broken.safetensors" in result.stderr
    sheet = Image.open(tmp_path / "sheet.png")
    assert sheet.size == (2 * 40 + 3 * 8, 2 * (32 + LABEL_HEIGHT) + 3 * 8)  # original + 3 styles, 2x2


def test_sheet_without_styles_is_one_line_error(tmp_path, monkeypatch):
    no_bundled_styles(monkeypatch, tmp_path)
    photo = make_photo(tmp_path / "photo.png")
    result = invoke(["sheet", str(photo), "--weights-dir", str(tmp_path / "none")])
    assert result.exit_code == 1 and result.stderr.strip().startswith("error: no usable styles in")


def test_labels_are_drawn_under_each_image():
    tile = Image.new("RGB", (30, 20), "white")
    sheet = render_sheet([("a", tile), ("b", tile)], columns=2)
    label_band = sheet.crop((8, 8 + 20, 8 + 30, 8 + 20 + LABEL_HEIGHT))
    assert label_band.convert("L").getextrema()[0] < 128  # some dark text pixels
    assert sheet.crop((8, 8, 38, 28)).convert("L").getextrema() == (255, 255)


def test_help_of_new_commands_has_examples():
    for command in ("export", "sheet"):
        text = invoke([command, "--help"]).output
        assert "Examples:" in text and f"styler {command}" in text
