"""End to end through Click: train a few steps with random features, then apply."""

import json
import os
import subprocess
import sys

import pytest
from click.testing import CliRunner
from PIL import Image

from styler import __version__
from styler.cli import main
from tests.conftest import make_photo, one_line_error

FAST = ["--features", "random", "--image-size", "64", "--style-size", "64", "--batch-size", "2",
        "--workers", "0", "--device", "cpu"]


@pytest.fixture(autouse=True)
def in_tmp(tmp_path, monkeypatch):
    # The data folder (weights/, runs/<name>) is the test's own folder, where the tests look.
    monkeypatch.setenv("STYLER_HOME", str(tmp_path))
    monkeypatch.chdir(tmp_path)


def run(args, **kwargs):
    result = CliRunner().invoke(main, args, catch_exceptions=False, **kwargs)
    return result


@pytest.fixture
def trained(tmp_path, photo_dir, style_image):
    weights = tmp_path / "weights"
    result = run(["train", "--style", str(style_image), "--content-dir", str(photo_dir), "--steps", "3",
                  "--name", "demo", "--weights-dir", str(weights), *FAST])
    assert result.exit_code == 0, result.output
    return weights


def test_train_writes_weights_with_honest_metadata(trained):
    from styler.io.weights import read_info

    info = read_info(trained / "demo.safetensors")
    meta = info.metadata
    assert meta["features"] == "random" and "random" in meta["features_note"]
    assert meta["steps"] == 3 and meta["image_size"] == 64 and len(meta["style_sha256"]) == 64
    assert set(meta["final_losses"]) >= {"content", "style", "tv", "adv", "d", "total"}
    assert meta["loss_weights"]["adv_weight"] == 0.05 and meta["train_config"]["seed"] == 0


def test_apply_one_image_beside_input(trained, tmp_path):
    src = make_photo(tmp_path / "shot.jpg", size=(50, 30))
    result = run(["apply", str(src), "--style", "demo", "--weights-dir", str(trained)])
    assert result.exit_code == 0, result.output
    out = tmp_path / "shot_demo.jpg"
    assert Image.open(out).size == (50, 30)
    assert Image.open(src).size == (50, 30)  # input untouched


def test_apply_nested_folder_json(trained, photo_dir, tmp_path):
    out = tmp_path / "out"
    result = run(["apply", str(photo_dir), "--style", str(trained / "demo.safetensors"), "-o", str(out), "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["done"] == 6 and summary["failed"] == 0
    assert (out / "nested" / "deeper" / "q.JPG").is_file()


def test_apply_reports_bad_file_and_exits_1(trained, photo_dir, tmp_path):
    (photo_dir / "zero.png").write_bytes(b"")
    result = run(["apply", str(photo_dir), "--style", "demo", "--weights-dir", str(trained), "-o", str(tmp_path / "o")])
    assert result.exit_code == 1
    assert "zero.png" in result.stderr and "done 6, failed 1" in result.stdout


def test_styles_lists_features(trained):
    result = run(["styles", "--weights-dir", str(trained)])
    assert result.exit_code == 0 and "demo" in result.stdout and "random" in result.stdout
    data = json.loads(run(["styles", "--weights-dir", str(trained), "--json"]).stdout)
    assert data["styles"][0]["features"] == "random"


def test_weights_dir_from_environment(trained, tmp_path):
    src = make_photo(tmp_path / "x.png")
    result = run(["apply", str(src), "--style", "demo", "-o", str(tmp_path / "y.png")],
                 env={"STYLER_WEIGHTS_DIR": str(trained)})
    assert result.exit_code == 0, result.output


def test_training_with_worker_processes(tmp_path, photo_dir, style_image):
    args = [a if a != "0" else "1" for a in FAST]
    result = run(["train", "--style", str(style_image), "--content-dir", str(photo_dir), "--steps", "2",
                  "--adv-weight", "0", "--weights-dir", str(tmp_path / "w"), *args])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "w" / "style.safetensors").is_file()


def test_unreadable_content_images_are_skipped_and_counted(tmp_path, photo_dir, style_image):
    (photo_dir / "broken.jpg").write_bytes(b"junk")
    result = run(["train", "--style", str(style_image), "--content-dir", str(photo_dir), "--steps", "4",
                  "--json", "--weights-dir", str(tmp_path / "w"), *FAST])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["skipped_images"] == [str(photo_dir / "broken.jpg")]


@pytest.mark.parametrize("extra,message", [
    (["--style-weight", "-1"], "style_weight must be a finite number >= 0"),
    (["--content-weight", "nan"], "content_weight must be a finite number"),
    (["--image-size", "62"], "multiple of the generator stride 8"),
    (["--steps", "0"], "steps must be >= 1"),
    (["--batch-size", "0"], "batch size must be >= 1"),
    (["--lr", "-0.1"], "lr must be a finite number > 0"),
    (["--precision", "fp16"], "fp16 needs a CUDA GPU"),
])
def test_bad_training_numbers_give_one_line(tmp_path, photo_dir, style_image, extra, message):
    result = run(["train", "--style", str(style_image), "--content-dir", str(photo_dir),
                  "--weights-dir", str(tmp_path / "w"), *FAST, *extra])
    assert result.exit_code == 1
    one_line_error(result, message)


def test_missing_and_empty_content_dir(tmp_path, style_image):
    result = run(["train", "--style", str(style_image), "--content-dir", str(tmp_path / "nope"), *FAST])
    assert result.exit_code == 1 and "no such directory" in result.stderr
    (tmp_path / "empty").mkdir()
    result = run(["train", "--style", str(style_image), "--content-dir", str(tmp_path / "empty"), *FAST])
    assert result.exit_code == 1 and "no images found" in result.stderr


def test_bad_style_images(tmp_path, photo_dir):
    result = run(["train", "--style", str(tmp_path / "missing.png"), "--content-dir", str(photo_dir), *FAST])
    assert result.exit_code == 2 and "no such file" in result.output
    junk = tmp_path / "junk.png"
    junk.write_bytes(b"\x89PNG garbage")
    result = run(["train", "--style", str(junk), "--content-dir", str(photo_dir), *FAST])
    assert result.exit_code == 1 and "junk.png" in result.stderr
    tiny = make_photo(tmp_path / "tiny.png", size=(8, 8))
    result = run(["train", "--style", str(tiny), "--content-dir", str(photo_dir), *FAST])
    assert result.exit_code == 1 and "at least 16" in result.stderr


def test_missing_imagenet_weights_fail_fast(tmp_path, photo_dir, style_image):
    result = run(["train", "--style", str(style_image), "--content-dir", str(photo_dir), "--features", "vgg16",
                  "--device", "cpu"])
    assert result.exit_code == 1
    line = result.stderr.strip()
    assert "\n" not in line and "vgg16-397923af.pth" in line and "--vgg-weights" in line


def test_unknown_style_lists_available(trained, tmp_path):
    src = make_photo(tmp_path / "x.png")
    result = run(["apply", str(src), "--style", "nope", "--weights-dir", str(trained)])
    assert result.exit_code == 1 and "available: demo" in result.stderr


def test_apply_refuses_to_overwrite_input(trained, tmp_path):
    src = make_photo(tmp_path / "x.png")
    before = src.read_bytes()
    result = run(["apply", str(src), "--style", "demo", "--weights-dir", str(trained), "-o", str(src)])
    assert result.exit_code == 1 and "refusing to overwrite" in result.stderr
    assert src.read_bytes() == before


def test_apply_bad_strength_and_device(trained, tmp_path):
    src = make_photo(tmp_path / "x.png")
    result = run(["apply", str(src), "--style", "demo", "--weights-dir", str(trained), "--strength", "2"])
    assert result.exit_code == 1 and "strength must be between 0 and 1" in result.stderr
    import torch

    if not torch.cuda.is_available():
        result = run(["apply", str(src), "--style", "demo", "--weights-dir", str(trained), "--device", "cuda"])
        assert result.exit_code == 1 and "no CUDA GPU" in result.stderr


def test_version_help_and_module_entry_point():
    assert __version__ in run(["--version"]).output
    for command in ("train", "apply", "styles"):
        text = run([command, "--help"]).output
        assert "Examples:" in text and "styler " + command in text
    proc = subprocess.run([sys.executable, "-m", "styler", "--version"], capture_output=True, text=True,
                          env={**os.environ, "NO_COLOR": "1"})
    assert proc.returncode == 0 and __version__ in proc.stdout


def test_quiet_prints_nothing_on_success(trained, tmp_path):
    src = make_photo(tmp_path / "x.png")
    result = run(["-q", "apply", str(src), "--style", "demo", "--weights-dir", str(trained)])
    assert result.exit_code == 0 and result.output == ""


def test_no_color_respected(trained):
    result = run(["styles", "--weights-dir", str(trained)], env={"NO_COLOR": "1"}, color=True)
    assert "\x1b[" not in result.output
