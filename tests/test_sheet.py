"""`styler sheet`: one image in every style (or those of --styles), labelled."""

import json

import torch
from click.testing import CliRunner
from PIL import Image

from styler.cli import main
from styler.config import GeneratorConfig
from styler.inference.sheet import LABEL_HEIGHT, render_sheet
from styler.io.weights import save_generator
from styler.nn import Generator
from tests.conftest import make_photo, one_line_error

TINY = GeneratorConfig(base_channels=4, num_residual=1)


def invoke(args):
    return CliRunner().invoke(main, args, catch_exceptions=False)


def no_bundled_styles(monkeypatch, tmp_path):
    monkeypatch.setattr("styler.io.weights.bundled_dir", lambda: tmp_path / "no-bundled")
    monkeypatch.chdir(tmp_path)  # the checkout's ./weights is the bundled folder: not read here


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


def three_styles(folder):
    for i, name in enumerate(("alpha", "beta", "gamma")):
        torch.manual_seed(i)
        save_generator(folder / f"{name}.safetensors", Generator(TINY), {"style_name": name})


def test_sheet_refuses_to_replace_an_existing_output_without_overwrite(tmp_path, monkeypatch):
    no_bundled_styles(monkeypatch, tmp_path)
    three_styles(tmp_path / "w")
    photo = make_photo(tmp_path / "photo.png", size=(40, 32))
    (tmp_path / "sheet.png").write_bytes(b"mine")
    args = ["sheet", str(photo), "-o", str(tmp_path / "sheet.png"), "--size", "32", "--weights-dir",
            str(tmp_path / "w"), "--device", "cpu"]
    one_line_error(CliRunner().invoke(main, args), "sheet.png already exists; pass --overwrite to replace it")
    assert (tmp_path / "sheet.png").read_bytes() == b"mine"
    assert invoke([*args, "--overwrite"]).exit_code == 0
    assert Image.open(tmp_path / "sheet.png").size[0] > 32


def test_sheet_styles_picks_a_subset_in_order(tmp_path, monkeypatch):
    no_bundled_styles(monkeypatch, tmp_path)
    three_styles(tmp_path / "w")
    photo = make_photo(tmp_path / "photo.png", size=(40, 32))
    args = ["sheet", str(photo), "--size", "32", "--weights-dir", str(tmp_path / "w"), "--device", "cpu", "--json"]
    result = invoke([*args, "-o", str(tmp_path / "two.png"), "--styles", "gamma, ALPHA,gamma", "--columns", "3"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["styles"] == ["gamma", "alpha"]
    assert Image.open(tmp_path / "two.png").size[0] == 3 * 32 + 4 * 8  # original + 2 styles in one row
    one_line_error(CliRunner().invoke(main, [*args, "-o", str(tmp_path / "x.png"), "--styles", "alpah"]),
                   "no style named 'alpah'")
    assert not (tmp_path / "x.png").exists()
    empty = CliRunner().invoke(main, [*args, "-o", str(tmp_path / "x.png"), "--styles", " , "])
    assert empty.exit_code == 2 and "give one or more style names" in empty.output
