"""Where styles and runs live (the per-user data folder, whatever the working folder), a style's
lineage, and the temp files a killed writer leaves behind."""

import json
import os
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from styler.cli import main
from styler.config import GeneratorConfig, default_data_dir, default_weights_dir
from styler.io.files import atomic_path, remove_stale_temps_in
from styler.io.weights import read_info, save_generator
from styler.nn import Generator
from styler.training.runs import default_run_dir
from tests.conftest import make_photo
from tests.test_train_cli import TINY, train

LONG_AGO = time.time() - 3600


@pytest.fixture(autouse=True)
def elsewhere(tmp_path, monkeypatch):
    """Work in a folder of its own, apart from the data folder ($STYLER_HOME, set by conftest)."""
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    return work


def stale(path: Path, when: float = LONG_AGO) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"half a file")
    os.utime(path, (when, when))
    return path


def test_the_data_folder_is_per_user_and_styler_home_moves_it(tmp_path, monkeypatch):
    monkeypatch.delenv("STYLER_HOME")
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    if sys.platform.startswith("linux"):
        assert default_data_dir() == tmp_path / "xdg" / "styler"
    monkeypatch.setenv("STYLER_HOME", str(tmp_path / "home"))
    assert default_data_dir() == tmp_path / "home"
    assert default_weights_dir() == tmp_path / "home" / "weights"
    assert default_run_dir("x") == tmp_path / "home" / "runs" / "x"
    monkeypatch.setenv("STYLER_WEIGHTS_DIR", str(tmp_path / "w"))
    assert default_weights_dir() == tmp_path / "w" and default_run_dir("x") == tmp_path / "home" / "runs" / "x"


def base(photo_dir, style_image, *extra):
    return ("--style", style_image, "--content-dir", photo_dir, *TINY, "--val-fraction", 0, *extra)


def test_styles_and_runs_go_to_the_data_folder_and_the_run_folder_is_printed(elsewhere, photo_dir, style_image):
    result = train(*base(photo_dir, style_image, "--steps", 2, "--name", "mine"))
    assert result.exit_code == 0, result.output
    run = default_data_dir() / "runs" / "mine"
    assert f"run folder {run}\n" in result.stderr  # before the first step
    assert result.stdout.strip().splitlines()[-1].endswith(f"; run folder {run}")
    assert (run / "checkpoint.pt").is_file() and (default_data_dir() / "weights" / "mine.safetensors").is_file()
    assert not (elsewhere / "runs").exists() and not (elsewhere / "weights").exists()
    quiet = train(*base(photo_dir, style_image, "--steps", 2, "--name", "q", "--json"))
    assert "run folder" not in quiet.stdout and json.loads(quiet.stdout)["run_dir"] == str(default_run_dir("q"))


def test_a_run_resumes_by_name_from_any_folder(tmp_path, photo_dir, style_image, monkeypatch):
    assert train(*base(photo_dir, style_image, "--steps", 2, "--name", "r")).exit_code == 0
    monkeypatch.chdir(tmp_path)
    result = train("--resume", "r", "--steps", 3)
    assert result.exit_code == 0, result.output
    assert read_info(default_weights_dir() / "r.safetensors").metadata["steps_trained"] == 3


def test_a_style_from_init_from_carries_its_lineage_even_when_the_first_file_is_gone(photo_dir, style_image):
    assert train(*base(photo_dir, style_image, "--steps", 2, "--name", "a")).exit_code == 0
    assert train(*base(photo_dir, style_image, "--steps", 3, "--name", "b", "--init-from", "a")).exit_code == 0
    (default_weights_dir() / "a.safetensors").unlink()
    assert train(*base(photo_dir, style_image, "--steps", 1, "--name", "c", "--init-from", "b")).exit_code == 0
    meta = {name: read_info(default_weights_dir() / f"{name}.safetensors").metadata for name in "bc"}
    assert (meta["b"]["init_from"], meta["b"]["lineage_steps"], meta["b"]["steps_trained"]) == ("a", 5, 3)
    assert (meta["c"]["init_from"], meta["c"]["lineage_steps"]) == ("b", 6)
    out = CliRunner().invoke(main, ["styles", "-v"]).stdout
    assert "    trained: 1 steps from b (5 steps before), kept step 1" in out


def test_a_resumed_run_keeps_the_lineage_it_started_with(photo_dir, style_image):
    assert train(*base(photo_dir, style_image, "--steps", 2, "--name", "a")).exit_code == 0
    assert train(*base(photo_dir, style_image, "--steps", 2, "--name", "b", "--init-from", "a")).exit_code == 0
    (default_weights_dir() / "a.safetensors").unlink()
    assert train("--resume", "b", "--steps", 3).exit_code == 0
    assert read_info(default_weights_dir() / "b.safetensors").metadata["lineage_steps"] == 5


def test_the_head_start_pre_training_is_not_counted(tmp_path, photo_dir, style_image):
    head = tmp_path / "head_start.safetensors"
    save_generator(head, Generator(GeneratorConfig(base_channels=4, num_residual=1)),
                   {"style_name": "head-start", "role": "head-start", "steps": 50000, "steps_trained": 50000})
    assert read_info(head).lineage_steps == 0
    assert train(*base(photo_dir, style_image, "--steps", 2, "--name", "h", "--init-from", head)).exit_code == 0
    meta = read_info(default_weights_dir() / "h.safetensors").metadata
    assert meta["lineage_steps"] == 2 and meta["init_head_start"] is True
    out = CliRunner().invoke(main, ["styles", "-v"]).stdout
    assert "    trained: 2 steps from the head start, kept step 2" in out


def test_remove_stale_temps_takes_only_our_temp_names_left_before_this_process(tmp_path):
    ours = stale(tmp_path / ".checkpoint.pt.k2j_9x0a.tmp")
    preview = stale(tmp_path / ".step_000200.png.abcdefgh.tmp")
    kept = [stale(tmp_path / ".checkpoint.pt.fresh123.tmp", time.time() + 1),  # a write under way
            stale(tmp_path / ".metrics.jsonl.abcdefgh.tmp"),  # another name
            stale(tmp_path / "checkpoint.pt.abcdefgh.tmp"),  # not hidden: not ours
            stale(tmp_path / ".checkpoint.pt.abc.tmp"),  # not mkstemp's eight characters
            stale(tmp_path / ".checkpoint.pt.ABCDEFGH.tmp")]
    assert sorted(remove_stale_temps_in(tmp_path, ["checkpoint.pt", "step_*.png"])) == sorted([ours, preview])
    assert all(path.exists() for path in kept) and not ours.exists()
    assert remove_stale_temps_in(tmp_path / "missing", ["x"]) == []


def test_the_temp_names_atomic_path_makes_are_the_ones_removed(tmp_path):
    names = []
    for _ in range(20):  # mkstemp's random part differs each time
        with pytest.raises(KeyboardInterrupt), atomic_path(tmp_path / "checkpoint.pt") as tmp:
            names.append(Path(tmp).name)
            raise KeyboardInterrupt  # atomic_path deletes its temp file; a kill -9 would leave it
    orphans = [stale(tmp_path / name) for name in names]
    assert sorted(remove_stale_temps_in(tmp_path, ["checkpoint.pt"])) == sorted(orphans)


def test_a_run_removes_what_a_killed_run_left_in_its_folders(photo_dir, style_image):
    assert train(*base(photo_dir, style_image, "--steps", 2, "--name", "k", "--preview-every", 1)).exit_code == 0
    run, weights = default_run_dir("k"), default_weights_dir()
    litter = [stale(run / ".checkpoint.pt.a1b2c3d4.tmp"), stale(run / ".run.json.a1b2c3d4.tmp"),
              stale(run / "previews" / ".step_000002.png.a1b2c3d4.tmp"), stale(weights / ".k.safetensors.a1b2c3d4.tmp")]
    others = [stale(run / ".notes.txt.a1b2c3d4.tmp"), stale(weights / ".other.safetensors.a1b2c3d4.tmp")]
    result = train("--resume", "k", "--steps", 3)
    assert result.exit_code == 0, result.output
    assert not any(path.exists() for path in litter) and all(path.exists() for path in others)


def test_a_folder_apply_removes_stale_temps_of_its_outputs(tmp_path, weights):
    photos = tmp_path / "photos"
    for i in range(2):
        make_photo(photos / f"p{i}.png", size=(32, 24), seed=i)
    out = tmp_path / "out"
    litter = stale(out / ".p0.png.a1b2c3d4.tmp")
    others = [stale(out / ".mine.png.a1b2c3d4.tmp"), stale(out / ".p1.png.fresh123.tmp", time.time() + 1)]
    result = CliRunner().invoke(main, ["apply", str(photos), "-o", str(out), "--style", "demo", "--weights-dir",
                                       str(weights), "--device", "cpu"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert (out / "p0.png").is_file() and not litter.exists() and all(path.exists() for path in others)


@pytest.mark.parametrize("command", [
    ["apply", "a.png", "-o", "out.png", "--style", "Mine"],
    ["export", "mine", "--format", "torchscript", "-o", "out.pt"],
    ["sheet", "a.png", "--styles", "mine", "-o", "out.png", "--size", "32"],
])
def test_apply_export_and_sheet_find_your_style_from_any_folder(elsewhere, weights, command):
    default_weights_dir().mkdir(parents=True)
    (weights / "demo.safetensors").rename(default_weights_dir() / "mine.safetensors")
    make_photo(elsewhere / "a.png", size=(32, 24))
    result = CliRunner().invoke(main, [*command, "--device", "cpu"] if command[0] != "export" else command)
    assert result.exit_code == 0, result.output
    assert (elsewhere / command[command.index("-o") + 1]).is_file()
